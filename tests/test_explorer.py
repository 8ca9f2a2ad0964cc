"""An explorer shows live controls in a notebook and, on a static page, a note where they would be."""

import pytest

widgets = pytest.importorskip("ipywidgets")

from polybook.views.explorer import LiveOnly, explorer, explorer_note, int_slider  # noqa: E402


def test_the_display_holds_the_widget_view_and_a_note_for_static_pages(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    draws = []
    w = explorer(lambda n: draws.append(n), button="Draw", n=int_slider(3, 1, 5, 1, "features <n>"))
    assert draws == [], "a button explorer drew before its button was pressed"  # fails if it trains on display
    (live,) = shown
    bundle = live._repr_mimebundle_()
    # Fails if the page would get no note (an empty box in the HTML) or the notebook no live widget.
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id, bundle
    html = bundle["text/html"]
    assert html.startswith('<p class="explorer-note">') and "features &lt;n&gt;" in html, html  # labels escaped
    assert bundle["text/plain"] == explorer_note(["features <n>"], "Draw"), bundle["text/plain"]


def test_a_live_explorer_draws_its_default_once(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    draws = []
    explorer(lambda n: draws.append(n), button=None, n=int_slider(3, 1, 5, 1, "n"))
    assert draws == [3], draws  # fails if a slider explorer shows no first figure, or draws it twice


def test_the_note_names_every_control_and_the_button():
    note = explorer_note(["level q", "n"], "Train")
    assert note.startswith('Explorer: the controls level q, n and a "Train" button'), note
    assert "static" in note and "Colab" in note, note
    assert 'button' not in explorer_note(["r"], None), "a slider explorer has no button to name"


def test_live_only_keeps_a_widget_without_a_bundle_method():
    # ipywidgets 7 (Colab's) displays itself instead of returning a bundle; the view is made by hand.
    class Old:
        _model_id = "abc"
    bundle = LiveOnly(Old(), "note")._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == "abc", bundle
    assert bundle["text/plain"] == "note" and "note" in bundle["text/html"], bundle
