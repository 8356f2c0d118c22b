"""Image decoding and resizing: every encoding, step padding, live rclpy messages, and each bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PILImage

from lewm_ros.data.images import (
    ImageDecodeError,
    encode_compressed,
    image_to_rgb,
    resize_rgb,
    resize_rgb_batch,
    rgb_to_image_fields,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
GREY = np.repeat(RGB[:, :, :1], 3, axis=2)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'])
@pytest.mark.parametrize('padding', [0, 5])
def test_raw_encodings_round_trip_pixel_exact(encoding, padding):
    source = GREY if encoding == 'mono8' else RGB
    fields = rgb_to_image_fields(source, encoding, row_padding=padding)
    assert fields['step'] == 9 * {'mono8': 1, 'rgb8': 3, 'bgr8': 3}.get(encoding, 4) + padding
    np.testing.assert_array_equal(image_to_rgb(SimpleNamespace(**fields)), source)


@pytest.mark.parametrize(('encoding', 'pixel'), [
    ('rgb8', [10, 20, 30]), ('bgr8', [30, 20, 10]), ('rgba8', [10, 20, 30, 255]), ('bgra8', [30, 20, 10, 255]),
])
def test_byte_layout_of_each_encoding(encoding, pixel):
    """Hand-written bytes, so that a symmetric mistake in encoder and decoder cannot hide."""
    assert rgb_to_image_fields(np.array([[[10, 20, 30]]], np.uint8), encoding)['data'].tolist() == pixel
    msg = SimpleNamespace(height=1, width=1, step=len(pixel), encoding=encoding, data=bytes(pixel))
    assert image_to_rgb(msg).tolist() == [[[10, 20, 30]]]
    mono = SimpleNamespace(height=1, width=2, step=2, encoding='mono8', data=bytes([7, 9]))
    assert image_to_rgb(mono).tolist() == [[[7, 7, 7], [9, 9, 9]]]


def test_live_rclpy_message_decodes():
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    fields = rgb_to_image_fields(RGB, 'bgr8', row_padding=3)
    msg = sensor_msgs.Image(**{**fields, 'data': fields['data'].tobytes()})
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_png_is_exact_and_jpeg_close():
    png = image_to_rgb(SimpleNamespace(format='png', data=encode_compressed(RGB, 'png')))
    np.testing.assert_array_equal(png, RGB)
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))
    jpeg = image_to_rgb(SimpleNamespace(format='rgb8; jpeg compressed bgr8', data=encode_compressed(smooth)))
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize(('change', 'reason'), [
    ({'height': 0}, 'empty image'),
    ({'step': 20}, 'step 20 <'),
    ({'data': np.zeros(10, np.uint8)}, 'data has 10 bytes'),
    ({'encoding': '16UC1'}, 'unsupported encoding'),
])
def test_bad_raw_images_raise_clear_errors(change, reason):
    msg = SimpleNamespace(**{**rgb_to_image_fields(RGB), **change})
    with pytest.raises(ImageDecodeError, match=reason):
        image_to_rgb(msg)


@pytest.mark.parametrize(('fmt', 'data', 'reason'), [
    ('tiff', b'xx', 'unsupported compressed format'),
    ('jpeg', b'not a jpeg', 'cannot decode'),
])
def test_bad_compressed_images_raise_clear_errors(fmt, data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        image_to_rgb(SimpleNamespace(format=fmt, data=data))


@pytest.mark.parametrize(('shape', 'size'), [((224, 224, 3), 64), ((48, 64, 3), 32), ((20, 20, 3), 33)])
def test_resize_matches_pil_bilinear_and_batch_matches_single(shape, size):
    images = RNG.integers(0, 256, (3, *shape), dtype=np.uint8)
    batch = resize_rgb_batch(images, size)
    assert batch.shape == (3, size, size, 3) and batch.dtype == np.uint8
    for image, resized in zip(images, batch, strict=True):
        np.testing.assert_array_equal(resize_rgb(image, size), resized)
        expected = np.asarray(PILImage.fromarray(image).resize((size, size), PILImage.BILINEAR))
        assert np.abs(expected.astype(int) - resized).max() <= 1


def test_resize_to_same_size_keeps_pixels():
    np.testing.assert_array_equal(resize_rgb(RGB[:6, :6], 6), RGB[:6, :6])
