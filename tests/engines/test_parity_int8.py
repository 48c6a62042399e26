"""restore-parity on an INT8 file says whether the images it judged were held out from calibration
(the file's ``int8_calibration_images`` record)."""

import json
from types import SimpleNamespace

from restormer_deploy.engines.parity import CALIBRATION_IMAGES_KEY, ImageParity, held_out


def _rows(*names):
    return [ImageParity(name=n, psnr_vs_reference=50.0, finite=True, max_abs_err=0.0) for n in names]


def test_held_out_from_the_files_calibration_record():
    int8 = SimpleNamespace(precision="int8", metadata={CALIBRATION_IMAGES_KEY: json.dumps(["a.png", "b.png"])})
    assert held_out(int8, _rows("c.png", "d.png")).startswith("yes")
    said = held_out(int8, _rows("b.png", "d.png"))
    assert said.startswith("no: 1 of the 2") and "b.png" in said
    assert held_out(SimpleNamespace(precision="int8", metadata={}), _rows("c.png")).startswith("not known")
    assert held_out(SimpleNamespace(precision="fp16", metadata={}), _rows("c.png")) is None
