"""Deployment: the serving gateway (OpenAI-compatible, A/B arms, micro-batching) and its traffic log.

* ``gateway``     -- ``Gateway`` + ``create_app(gateway)``: ``/v1/chat/completions``, ``/v1/models``,
  ``/v1/feedback``, ``/v1/stats``; sticky A/B routing (``route``, ``sticky_bucket``) over ``Arm`` s.
* ``traffic_log`` -- ``EventLog`` (append-only ``events.jsonl``) and ``fold_events`` into the traffic
  schema (``traffic.jsonl``) that ``characterflywheel.data.ingest`` reads.

Submodules are imported when used (the gateway pulls in FastAPI), not here.
"""
