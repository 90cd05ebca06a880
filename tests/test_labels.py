from cacpipe import labels


def test_six_non_overlapping_classes_with_artery_and_calcium():
    assert [c.id for c in labels.LABEL_CLASSES] == [1, 2, 3, 4, 5, 6]
    assert [c.name for c in labels.LABEL_CLASSES] == [
        "RCA", "LAD", "LCX", "RCA_calcium", "LAD_calcium", "LCX_calcium"]
    for a in labels.ARTERIES:
        assert labels.LABEL_BY_ID[labels.CALCIUM_ID[a]].artery == a
        assert labels.LABEL_BY_ID[labels.CALCIUM_ID[a]].is_calcium


def test_regions_cover_artery_plus_its_calcium_and_keep_order():
    lab = labels.nnunet_labels()
    assert list(lab) == ["background", "whole_RCA", "whole_LAD", "whole_LCX",
                         "RCA_calcium", "LAD_calcium", "LCX_calcium"]
    assert lab["whole_LAD"] == [2, 5]
    assert lab["LCX_calcium"] == 6
    ds = labels.nnunet_dataset_json(10)
    assert ds["regions_class_order"] == [1, 2, 3, 4, 5, 6]
    assert ds["channel_names"] == {"0": "CT"}


def test_colours_follow_the_product_convention():
    lut = labels.colour_lut()
    r, g, b = lut[labels.ARTERY_ID["RCA"]]
    assert g > r and g > b  # green
    r, g, b = lut[labels.ARTERY_ID["LAD"]]
    assert r > 200 and g > 150 and b < 80  # yellow
    r, g, b = lut[labels.ARTERY_ID["LCX"]]
    assert r > 200 and g < 50  # red
    for cid in labels.CALCIUM_IDS:
        r, g, b = lut[cid]
        assert b > r and b > g  # blue
