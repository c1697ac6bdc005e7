"""The chapters' figures: stored at the book's dpi, no wider than its column, images drawn pixel-exact."""

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from latentlab.chapters import plot  # noqa: E402


@pytest.fixture(autouse=True)
def restore_rcparams():
    with matplotlib.rc_context():
        yield
    plt.close("all")


def test_book_style_sets_the_dpi_fonts_and_nearest_interpolation():
    plot.book_style()
    assert plt.rcParams["figure.dpi"] == plot.BOOK_DPI == plt.rcParams["savefig.dpi"]
    assert plt.rcParams["image.interpolation"] == "nearest" and plt.rcParams["font.size"] == 10
    plot.book_style(dpi=120, font_size=9)
    assert plt.rcParams["figure.dpi"] == 120 and plt.rcParams["font.size"] == 9


def test_image_rows_never_exceed_the_column_width():
    images = torch.rand(20, 1, 28, 28)
    wide = plot.image_rows({"a": images, "b": images})
    assert wide.get_size_inches()[0] == pytest.approx(plot.MAX_FIGURE_WIDTH)
    narrow = plot.image_rows({"a": images[:4]})
    assert narrow.get_size_inches()[0] == pytest.approx(0.6 * 4 + 1.5)  # few columns keep their scale
    grid = plot.image_grid(images, ncols=20)
    assert grid.get_size_inches()[0] == pytest.approx(plot.MAX_FIGURE_WIDTH)


def test_images_are_drawn_pixel_exact():
    fig = plot.image_grid(torch.rand(4, 3, 8, 8), ncols=4)
    (picture,) = fig.axes[0].get_images()
    assert picture.get_interpolation() == "nearest"
