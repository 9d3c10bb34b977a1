"""The task runner's serialized run context: Prefect's own, minus the settings (no server)."""

from __future__ import annotations

import uuid

from oiflow.flows import runtime

runtime.configure()

from prefect import tags, task  # noqa: E402
from prefect.context import serialize_context  # noqa: E402

from oiflow.flows.runners import _context_without_settings  # noqa: E402


@task
def _probe(x):
    return x


def test_context_is_prefects_without_the_settings():
    kw = {"task": _probe, "task_run_id": uuid.uuid4(), "task_inputs": {}, "copy_to_child_ctx": True}
    with tags("night-2024-01-01"):
        ours = _context_without_settings(dict(kw))
        theirs = serialize_context(asset_ctx_kwargs=dict(kw))
    assert theirs["settings_context"]  # Prefect sends the whole settings model…
    assert ours["settings_context"] == {}  # …which the workers rebuild from their own environment
    assert set(ours) == set(theirs)  # a Prefect upgrade that adds a context shows up here
    assert {k: v for k, v in ours.items() if k != "settings_context"} == \
        {k: v for k, v in theirs.items() if k != "settings_context"}
    assert ours["tags_context"]["current_tags"] == {"night-2024-01-01"}
