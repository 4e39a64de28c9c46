"""Training data: CelebA attribute files, latent datasets, the stateless batch sampler."""
import pytest
import torch

from train_helpers import write_attrs
from vrfam_rt.errors import VrfamError
from vrfam_rt.training.core import batch_indices
from vrfam_rt.training.data import LatentDataset, read_attributes


def test_celeba_attribute_file_gives_names_files_and_zero_one_labels(tmp_path):
    path = write_attrs(tmp_path / "list_attr_celeba.txt", ["a.jpg", "b.jpg"],
                       torch.tensor([[1, -1], [-1, 1]]), names=("Smiling", "Male"))
    assert read_attributes(path) == (("Smiling", "Male"), ["a.jpg", "b.jpg"], pytest.approx(
        torch.tensor([[1.0, 0.0], [0.0, 1.0]])))


@pytest.mark.parametrize("text,message", [
    ("0\nSmiling Male\n", "not a CelebA attribute file"),
    ("x\nSmiling Male\na.jpg 1 -1\nb.jpg 1 1\n", "line 1 should be the image count"),
    ("2\nSmiling Male\na.jpg 1 -1\nb.jpg 1 0\n", ":4: expected a file name and 2 values"),
    ("3\nSmiling Male\na.jpg 1 -1\nb.jpg 1 1\n", "line 1 says 3 images, the file lists 2"),
])
def test_a_malformed_attribute_file_is_refused_with_the_line(tmp_path, text, message):
    (tmp_path / "attrs.txt").write_text(text)
    with pytest.raises(VrfamError, match=message):
        read_attributes(tmp_path / "attrs.txt")


def test_latent_dataset_round_trips_and_correlates_its_labels(tmp_path):
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    data = LatentDataset(torch.randn(4, 10, 64), labels, ("Smiling", "Mouth_Slightly_Open", "Male"))
    data.save(tmp_path / "latents.safetensors")
    back = LatentDataset.load(tmp_path / "latents.safetensors")
    assert back.attributes == data.attributes and torch.equal(back.wplus, data.wplus)
    gamma = back.correlation(("Smiling", "Mouth_Slightly_Open", "Male"))
    assert gamma[0, 1] == pytest.approx(1.0) and gamma[0, 2] == pytest.approx(0.0)
    with pytest.raises(VrfamError, match="no label for classifier attribute 'Bald'"):
        back.correlation(("Bald",))


def test_each_epoch_of_the_sampler_visits_every_sample_once():
    seen = torch.cat([batch_indices(10, 4, step, seed=5) for step in range(5)])   # 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))
    assert not torch.equal(seen[:10], seen[10:])
    assert torch.equal(batch_indices(10, 4, 3, seed=5), batch_indices(10, 4, 3, seed=5))
