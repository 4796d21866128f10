# The filter steps in a pipeline file: they load, place (here on the board that reads the
# sensor) and reach the assignment with their parameters; a bad parameter names the file,
# the line and the key.
import textwrap

import pytest

from sensormesh.api import PipelineFileError
from sensormesh.controller.pipeline_file import load_model

FILE = """\
pipeline: filtered
devices:
  board: {interpreter: micropython, sensors: [temperature@10, touch@20], local: true}
  pc: {interpreter: cpython, local: true}
steps:
  t: {type: source, sensor: temperature, on: board}
  k: {type: source, sensor: touch, on: board}
  cal:  {type: calibrate, input: t, points: [[0, 0.5], [100, 99.5]]}
  lim:  {type: clamp, input: cal, min: -40, max: 125}
  spk:  {type: median, input: lim, size: 5}
  sm:   {type: ema, input: spk, alpha: 0.2}
  chg:  {type: delta, input: sm, percent: 1}
  hb:   {type: heartbeat, input: chg, interval: 10000}
  q:    {type: quantile, input: lim, size: 20, slide: 20, q: 0.95}
  btn:  {type: debounce, input: k, time: 50}
  dead: {type: timeout, input: t, time: 3000, marker: "sensor silent"}
sinks:
  out:  {type: callback, input: hb, on: pc}
  p95:  {type: callback, input: q, on: pc}
  touches: {type: callback, input: btn, on: pc}
  alive: {type: callback, input: dead, on: pc}
"""


def test_filters_load_place_and_reach_the_assignment(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(FILE)
    model = load_model(str(path))
    plan = model.place("edge")
    a = plan.assignments()
    board = {s["id"]: s for s in a["board"]["steps"]}
    assert board["cal"]["type"] == "calibrate" and board["cal"]["params"]["points"] == [[0, 0.5], [100, 99.5]]
    assert board["lim"]["params"] == {"min": -40, "max": 125, "mode": "clamp"}
    assert board["spk"]["params"] == {"size": 5, "slide": 1}
    assert board["dead"]["params"] == {"time": 3000, "marker": "sensor silent"}
    for sid in ("cal", "lim", "spk", "sm", "chg", "btn"):
        assert sid in board, sorted(board)


@pytest.mark.parametrize("step, text", [
    ("{type: ema, input: t, alpha: 2}", "alpha"),
    ("{type: delta, input: t}", "exactly one of delta"),
    ("{type: calibrate, input: t, points: [[1, 2]]}", "two or more"),
    # which point is wrong, and why
    ("{type: calibrate, input: t, points: [[0, 0], [1, 2], [2]]}",
     "point 3 of 3 must be a [raw, true] pair of finite numbers, not [2]"),
    ("{type: calibrate, input: t, points: [[0, 0], [1, true], [2, 4]]}",
     "point 2 of 3 must be a [raw, true] pair of finite numbers, not [1, true]"),
    ("{type: calibrate, input: t, points: [[3, 0], [3, 2]]}", "all points have raw 3"),
    # a line whose slope or offset is not finite: raw values a hair apart, or huge numbers
    ("{type: calibrate, input: t, points: [[0, 0], [1.0e-320, 1.0e+308]]}", "line through these points is not finite"),
    ("{type: calibrate, input: t, points: [[1.0e+300, 0], [-1.0e+300, 1.0e+300], [0, -1.0e+300]]}",
     "line through these points is not finite"),
    ("{type: clamp, input: t, min: 5, max: 1}", "must be <= max"),
    ("{type: quantile, input: t, size: 5, q: 1.5}", "q"),
    ("{type: timeout, input: t}", "time"),
])
def test_bad_filter_parameters_name_the_line(tmp_path, step, text):
    body = textwrap.dedent("""\
        pipeline: bad
        devices:
          pc: {interpreter: cpython, sensors: [temperature], local: true}
        steps:
          t: {type: source, sensor: temperature}
          f: %s
        sinks:
          out: {type: print, input: f}
        """) % step
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(PipelineFileError) as e:
        load_model(str(path))
    msg = str(e.value)
    assert "bad.yaml:6:" in msg and text in msg, msg
