"""Plots: quiet about glyphs the font lacks."""

from __future__ import annotations

import io
import warnings

import pytest

from comptk.experiments.plots import new_figure, render


def test_class_names_the_font_lacks_draw_without_a_warning_per_glyph():
    def draw(save):
        fig = new_figure(3, 2)
        fig.subplots().set_title("김치 찌개")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            save(fig)
        return [str(w.message) for w in caught]

    plain = draw(lambda fig: fig.savefig(io.BytesIO(), format="png"))
    if not any("missing from" in m for m in plain):
        pytest.skip("a font with Hangul is installed: nothing to quieten")
    assert draw(lambda fig: render(fig, io.BytesIO(), format="png")) == []


def test_both_matplotlib_wordings_of_a_missing_glyph_are_quietened():
    class Figure:  # what savefig warns, in older (3.7) and newer matplotlib
        def savefig(self, target, **kwargs):
            warnings.warn("Glyph 44608 (\\N{HANGUL SYLLABLE GIM}) missing from current font.", UserWarning)
            warnings.warn("Glyph 44608 (\\N{HANGUL SYLLABLE GIM}) missing from font(s) DejaVu Sans.", UserWarning)
            warnings.warn("something else", UserWarning)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render(Figure(), io.BytesIO())
    assert [str(w.message) for w in caught] == ["something else"]
