"""`studio restore --remote`: the same command, run on a GPU elsewhere, written here.

Targets: another `studio serve` (`studio_server`), a Replicate model (`replicate`), a RunPod serverless
endpoint running studio (`runpod`; its worker is `studio.serve.runpod`). `target` parses `--remote` and
finds the token, `plan` asks the remote everything before the first upload, `loop` keeps several jobs in
flight and writes each result with studio's own writer (`output`), `http` waits out rate limits and short
outages, `consent` says what leaves the machine and confirms paid batches.
"""

from studio.remote.consent import announce_first_use, confirm_paid
from studio.remote.loop import run_remote_batch
from studio.remote.plan import jobs_to_send, plan_remote, remote_target
from studio.remote.provider import RemotePlan
from studio.remote.target import RemoteTarget, plain_http_to_network

__all__ = [
    "RemotePlan",
    "RemoteTarget",
    "announce_first_use",
    "confirm_paid",
    "jobs_to_send",
    "plain_http_to_network",
    "plan_remote",
    "remote_target",
    "run_remote_batch",
]
