import json

import pytest

from cacpipe.errors import InputDataError
from label_tools.nnunet_dataset import patient_folds, write_dataset_json


def test_dataset_json_keeps_region_order(tmp_path):
    p = write_dataset_json(tmp_path, 7)
    d = json.loads(p.read_text())
    assert list(d["labels"])[1:4] == ["whole_RCA", "whole_LAD", "whole_LCX"]
    assert d["numTraining"] == 7 and d["regions_class_order"] == [1, 2, 3, 4, 5, 6]


def test_folds_keep_patients_together():
    cases = [f"c{i}" for i in range(12)]
    patient = {c: f"p{i // 2}" for i, c in enumerate(cases)}  # two scans per patient
    splits = patient_folds(cases, patient, 5)
    assert len(splits) == 5
    assert sorted(sum((s["val"] for s in splits), [])) == sorted(cases)
    for s in splits:
        assert not {patient[c] for c in s["val"]} & {patient[c] for c in s["train"]}
    with pytest.raises(InputDataError):
        patient_folds(cases[:4], patient, 5)
