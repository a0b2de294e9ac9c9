"""The README's "why p(x|z)" example runs as written and means what its comments say."""

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _why_block() -> str:
    text = open(README, encoding="utf-8").read()
    section = text.split('## "If z is fixed the decoder output is fixed, so why p(x|z)?"')[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_why_example_runs_and_its_comments_hold():
    code = _why_block().replace("epochs=10", "epochs=2")  # same code, shorter training
    code = code.replace("num_samples=1000", "num_samples=20")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    px, data, model = scope["px"], scope["data"], scope["model"]
    assert px.mean().shape == (5, 64)
    mean = px.mean().numpy()
    assert np.all((mean > 0) & (mean < 1))  # x-hat: probabilities, not an image of 0/1
    draws = np.stack([px.sample().numpy() for _ in range(4)])
    assert set(np.unique(draws)) <= {0.0, 1.0} and not np.all(draws == draws[0])
    q = model.encoder(data.x_test[:5])
    fixed = model.decoder(q.mean())
    np.testing.assert_array_equal(fixed.mean(), model.decoder(q.mean()).mean())  # fixed params
    assert model.predict(data.x_test[:7], output="sample", verbose=0).shape == (7, 64)
