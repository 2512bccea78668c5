
from personsearch.pseudo_labels.dynamic import dynamic_threshold, multilabel_targets  # noqa: E402,F401  (SSL)
