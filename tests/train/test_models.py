import pytest
import timm
import torch
from safetensors.torch import save_file

from comptk import ComptkError, resolve
from comptk.train.models import Classifier, create_model


@pytest.mark.parametrize("name", ["small_resnet", "test_resnet"])
def test_weights_file_is_loaded_and_the_head_is_replaced(tmp_path, name):
    source = timm.create_model(name, num_classes=1000)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_model(resolve(None, {"model": name, "weights": str(path)}), n_classes=7)
    own, theirs = model.state_dict(), source.state_dict()
    shared = [k for k in own if k in theirs and own[k].shape == theirs[k].shape]
    assert len(shared) > 3 and all(torch.equal(own[k], theirs[k]) for k in shared)
    assert model.get_classifier().out_features == 7


def test_a_weights_file_of_another_timm_model_is_refused_as_such_not_as_a_download_failure(tmp_path):
    """timm's loader refuses it with a multi-line RuntimeError; the error says the file does not fit the model."""
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}, str(path))
    with pytest.raises(ComptkError, match=r"weights file .*resnet\.safetensors: only 0 of model .* tensors .* fit") as info:
        create_model(resolve(None, {"model": "test_efficientnet", "weights": str(path)}), n_classes=3)
    assert "download" not in str(info.value) and "\n" not in str(info.value)


def test_a_weights_file_timm_refuses_for_one_tensor_loads_the_rest_and_says_what_it_left(tmp_path, caplog):
    import logging

    state = {k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)  # another shape: timm's strict loader refuses the file
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with caplog.at_level(logging.INFO, logger="comptk"):
        model = create_model(resolve(None, {"model": "test_resnet", "weights": str(path)}), n_classes=3)
    own = model.state_dict()
    assert torch.equal(own["layer1.0.conv2.weight"], state["layer1.0.conv2.weight"])
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "w.safetensors: loaded" in r.getMessage()]
    assert len(warned) == 1 and "tensors outside the classifier head" in warned[0].getMessage()


def test_small_resnet_without_weights_file_cannot_be_pretrained():
    with pytest.raises(ComptkError, match="'small_resnet' has no published pretrained weights: give --weights FILE"):
        create_model(resolve(None, {"model": "small_resnet", "pretrained": True}), n_classes=3)


def test_classifier_normalises_with_the_model_config():
    model = Classifier(timm.create_model("small_resnet", num_classes=4))
    assert model(torch.rand(2, 3, 20, 20)).shape == (2, 4)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))


def test_factorised_heads_refuse_numbered_classes_in_text_order(tmp_path):
    """Mixed-radix heads need class index = numeric class: "0", "1", "10", ... (text order) is an error."""
    from click.testing import CliRunner

    from comptk.cli import main
    from tests.conftest import make_tiny

    comp = make_tiny(tmp_path / "t", classes=tuple(str(i) for i in range(12)), n_per_class=2)
    result = CliRunner().invoke(main, ["train", str(comp), "--workdir", str(comp), "--folds", "2", "--heads", "3x4",
                                       "--quiet"])
    assert result.exit_code == 2 and "needs the classes in numeric order" in result.output, result.output
    assert not (comp / "runs").exists()
