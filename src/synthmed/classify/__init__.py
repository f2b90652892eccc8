"""Robust, interpretable classifiers trained on real or synthetic stores (Han et al. 2020).

Tasks read from a store's tumour masks (:mod:`.targets`); MONAI ResNet / DenseNet networks
(:mod:`.networks`) with dual batch norm (:mod:`.dual_bn`); PGD attacks for adversarial
training and, through the adversarial-robustness-toolbox, for evaluation (:mod:`.attacks`);
saliency maps through Captum (:mod:`.saliency`), scored against the tumour masks by
:mod:`synthmed.metrics.saliency`.
"""
