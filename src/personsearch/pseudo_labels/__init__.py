
from personsearch.pseudo_labels.dynamic import dynamic_threshold, multilabel_targets  # noqa: E402,F401  (SSL)
from personsearch.pseudo_labels.cgps import CGPSPseudoLabeler, PseudoLabelResult  # noqa: E402,F401  (CGPS)
from personsearch.pseudo_labels.diagnostics import pseudo_label_precision_recall  # noqa: E402,F401  (CGPS)
from personsearch.pseudo_labels.jaccard import jaccard_distance_sparse  # noqa: E402,F401  (CGPS)
