"""Drive simulated users against a gateway over real HTTP, day after day.

Each day, every user who comes back opens a session with a line they really wrote, the character
replies through the gateway (the official ``openai`` client, so any OpenAI-compatible gateway
works), and the hidden landscape decides whether the user continues and whether they give a
thumbs up or down, which is posted to ``/v1/feedback``. After the session the landscape decides
whether the user returns on a later day, which is what engagement breadth measures.

Sessions run concurrently on a thread pool so the gateway can batch their turns.

A run of several traffic windows (one per flywheel generation) gives each window a
``session_offset``: the number of sessions a user may have had in the earlier windows (their days),
so a window's sessions take the user's scripts after those, and no window replays a conversation an
earlier one used (real users do not replay conversations; see ``SimUser.script_for``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import openai

from characterflywheel.simulate.landscape import Landscape, stable_rng
from characterflywheel.simulate.users import SimUser


@dataclass(frozen=True)
class SessionOutcome:
    user_id: str
    day: int
    turns: int
    p_continues: tuple[float, ...]
    thumbs_up: int
    thumbs_down: int
    returns: bool


@dataclass
class SimulationReport:
    sessions: list[SessionOutcome] = field(default_factory=list)
    requests: int = 0
    feedback: int = 0
    seconds: float = 0.0

    @property
    def sessions_per_minute(self) -> float:
        return 60.0 * len(self.sessions) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float]:
        turns = [s.turns for s in self.sessions]
        p_cont = [p for s in self.sessions for p in s.p_continues]
        return {
            "sessions": len(self.sessions), "requests": self.requests, "feedback": self.feedback,
            "mean_turns": sum(turns) / len(turns) if turns else 0.0,
            "mean_p_continue": sum(p_cont) / len(p_cont) if p_cont else 0.0,
            "sessions_per_minute": self.sessions_per_minute, "seconds": self.seconds,
        }


class SessionDriver:
    """Plays one user's session against the gateway."""

    def __init__(self, base_url: str, landscape: Landscape, personas: Mapping[str, str], seed: int = 0,
                 model: str = "characterflywheel", max_turns: int = 6, start: dt.datetime | None = None,
                 timeout: float = 600.0, tag: str = "", session_offset: int = 0) -> None:
        # No keep-alive: a pooled connection the server closed while idle fails the next request on
        # it ("Server disconnected without sending a response"), and neither a chat turn nor a
        # signal may be sent twice. A fresh loopback connection per request costs next to nothing.
        fresh = httpx.Limits(max_keepalive_connections=0)
        self.client = openai.OpenAI(base_url=base_url, api_key="simulated", timeout=timeout, max_retries=0,
                                    http_client=httpx.Client(timeout=timeout, limits=fresh))
        self.http = httpx.Client(base_url=base_url, timeout=timeout, limits=fresh)
        self.landscape = landscape
        self.personas = personas
        self.seed = seed
        self.model = model
        self.max_turns = max_turns
        self.start = start or dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
        self.tag = tag  # keeps conversation ids unique across flywheel generations
        # Sessions a user may have had in earlier windows: this window's scripts come after theirs.
        self.session_offset = session_offset

    def script(self, user: SimUser, session_index: int) -> tuple[str, ...]:
        """What ``user`` says in their ``session_index``-th session of this window."""
        return user.script_for(self.session_offset + session_index)[: self.max_turns]

    def run(self, user: SimUser, day: int, session_index: int) -> SessionOutcome:
        rng = stable_rng(self.seed, "session", user.user_id, day, *([self.tag] if self.tag else []))
        script = self.script(user, session_index)
        started = self.start + dt.timedelta(days=day, seconds=int(rng.integers(8 * 3600, 22 * 3600)))
        conversation_id = f"{self.tag}{user.user_id}-d{day}"
        history: list[dict[str, str]] = []
        p_continues: list[float] = []
        ups = downs = 0
        for turn, raw_line in enumerate(script):
            line = self.landscape.mirrored_line(raw_line, history, rng)
            history.append({"role": "user", "content": line})
            completion = self.client.chat.completions.create(
                model=self.model, messages=history, user=user.user_id,
                metadata={"character_id": user.character_id, "conversation_id": conversation_id,
                          "session_started_at": started.isoformat().replace("+00:00", "Z"), "turn": str(turn)},
            )
            reply = completion.choices[0].message.content or ""
            reaction = self.landscape.react(user.taste, history, reply, self.personas.get(user.character_id),
                                            noise_key=f"{conversation_id}-{turn}")
            history.append({"role": "assistant", "content": reply})
            continued = bool(rng.random() < reaction.p_continue) and turn + 1 < len(script)
            draw = rng.random()
            thumbs = "up" if draw < reaction.p_thumbs_up else "down" if draw > 1 - reaction.p_thumbs_down else None
            ups, downs = ups + (thumbs == "up"), downs + (thumbs == "down")
            self.http.post("/feedback", json={"response_id": completion.id, "continued": continued, "thumbs": thumbs})
            p_continues.append(reaction.p_continue)
            if not continued:
                break
        p_return = self.landscape.return_probability(user.taste, p_continues, ups, downs)
        return SessionOutcome(user.user_id, day, len(p_continues), tuple(p_continues), ups, downs,
                              bool(rng.random() < p_return))


def simulate_days(driver: SessionDriver, users: Sequence[SimUser], days: int, concurrency: int = 32,
                  on_session: Callable[[SessionOutcome], None] | None = None) -> SimulationReport:
    """Day 0: every user; later days: the users whose last session made them come back.

    A user has at most one session a day, so a window of ``days`` uses session indices below
    ``days`` (shifted by the driver's ``session_offset``)."""
    report = SimulationReport()
    active = list(users)
    sessions_so_far = {user.user_id: 0 for user in users}
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for day in range(days):
            outcomes = list(pool.map(lambda u: driver.run(u, day, sessions_so_far[u.user_id]), active))
            for outcome in outcomes:
                sessions_so_far[outcome.user_id] += 1
                report.sessions.append(outcome)
                report.requests += outcome.turns
                report.feedback += outcome.turns
                if on_session is not None:
                    on_session(outcome)
            returning = {o.user_id for o in outcomes if o.returns}
            active = [u for u in users if u.user_id in returning]
    report.seconds = time.perf_counter() - began
    return report
