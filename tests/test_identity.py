"""ArcFace IR-SE50 with the identity loss's crop and pooling (shared/UPSTREAM.md section 3)."""
import torch
import torch.nn.functional as F

from vrfam_rt import models
from vrfam_rt.config import load_config


def arcface():
    torch.manual_seed(0)
    return models.build(load_config("tiny"), "identity")


def test_embedding_is_unit_norm():
    with torch.no_grad():
        e = arcface()(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert e.shape == (3, 64) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-6)


def test_crop_box_scales_with_the_image_and_is_pooled_to_the_input_size():
    arc = arcface()
    img = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        expected = arc.embed(F.adaptive_avg_pool2d(img[:, :, 35:223, 32:220], 32))
        assert torch.allclose(arc(img), expected, atol=1e-6)
        small = torch.rand(1, 3, 64, 64)
        assert torch.allclose(arc(small), arc.embed(F.adaptive_avg_pool2d(small[:, :, 9:56, 8:55], 32)))


def test_images_larger_than_256_are_pooled_to_256_first():
    arc = arcface()
    img = torch.rand(1, 3, 512, 512)
    with torch.no_grad():
        assert torch.allclose(arc(img), arc(F.adaptive_avg_pool2d(img, 256)))


def test_similarity_of_an_image_with_itself_is_one():
    arc = arcface()
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(arc.similarity(img, img), torch.ones(2), atol=1e-5)
