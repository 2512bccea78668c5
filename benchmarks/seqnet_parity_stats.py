"""SeqNet parity figures for docs/reference_parity.md: runs the parity test's own helpers (tests/models/
test_seqnet_parity.py) in .venv-ref and prints one JSON line per path: the model as loaded
(reference path), the BN-folded channels_last inference path, and a negative control (two biases
of our converted model nudged by 0.05) that must fall outside the tolerances.

    OMP_NUM_THREADS=1 .venv-ref/bin/python benchmarks/seqnet_parity_stats.py
"""
import copy, json, sys, tempfile
from pathlib import Path
import torch
sys.path.insert(0, "tests/models")
import test_seqnet_parity as t
from personsearch.models.inference import prepare_for_inference

def stats(reference, model):
    out = {"query_cos_min": 1.0, "dets_theirs": [], "dets_ours": [], "matched": 0, "total": 0, "score_err_max": 0.0, "emb_cos_min": 1.0}
    for image, boxes in zip(t._images(torch.Generator().manual_seed(2)), t.QUERY_BOXES):
        theirs = t._theirs(reference, image, boxes)
        mine = t._ours_queries(model, image, boxes)
        out["query_cos_min"] = min(out["query_cos_min"], float(torch.nn.functional.cosine_similarity(theirs.double(), mine.double(), dim=1).min()))
    for image in t._images(torch.Generator().manual_seed(2)):
        theirs = t._theirs(reference, image, None)
        b, s, e = t._ours_detections(model, image)
        out["dets_theirs"].append(int(theirs["boxes"].shape[0])); out["dets_ours"].append(int(b.shape[0]))
        te = theirs["embeddings"] / theirs["scores"][:, None]
        iou = t._iou(theirs["boxes"], b)
        for i in range(theirs["boxes"].shape[0]):
            out["total"] += 1
            if b.shape[0] == 0: continue
            j = int(iou[i].argmax())
            if float(iou[i, j]) < 0.95: continue
            out["matched"] += 1
            out["score_err_max"] = max(out["score_err_max"], abs(float(theirs["scores"][i]) - float(s[j])))
            out["emb_cos_min"] = min(out["emb_cos_min"], float(torch.nn.functional.cosine_similarity(te[i:i+1].double(), e[j:j+1].double())))
    out["score_range_theirs"] = None
    return out

torch.set_num_threads(1)
reference = t.build_reference()
model, info, _ = t.build_ours(reference, Path(tempfile.mkdtemp()))
print("reference_path", json.dumps(stats(reference, model)), flush=True)
folded = copy.deepcopy(model); prepare_for_inference(folded)
print("bn_folded_channels_last", json.dumps(stats(reference, folded)), flush=True)
control = copy.deepcopy(model)
with torch.no_grad():
    control.roi_heads.embedding.project_res5.bn.bias.add_(0.05)
    control.roi_heads.reid_regressor.layer.bn.bias[4:].add_(0.05)
print("control_perturbed", json.dumps(stats(reference, control)), flush=True)
