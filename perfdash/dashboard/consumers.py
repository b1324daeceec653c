"""Live dashboard updates: one coalesced update per second per page at most.

Workers announce committed points to the "metrics" group, which each web process joins once
(`Announcements`), not once per socket. Sockets of this process that show the same view share
one broadcast: when something changed, it computes the page once, as late as it can (so the
update holds everything committed until just before it goes out), encodes it once, and hands
it to all of them together, never sooner than a second after its previous send; a socket still
taking the previous update skips this one (a slow viewer holds up no one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import orjson
import psycopg
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import QueryDict

from perfdash.dashboard import boards, explore, panels, peaks
from perfdash.dashboard.models import Board
from perfdash.dashboard.peaks import AgentPeaks
from perfdash.live.publish import GROUP
from perfdash.metrics.scope import QueryError

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 1.0
# The compute starts the median of recent compute times before its slot. Starting earlier holds
# back what was committed meanwhile; a late finish delays this send and every later slot. The
# median balances the two (p95 freshness ~ 0.95 s + lead + 1.95 x mean lateness) and, unlike a
# mean, is not dragged up for many seconds by one slow compute (one that overlaps compaction).
COMPUTE_SAMPLES = 15
# channels-redis drops a group member after a day (group_expiry): join again well before.
REJOIN_S = 3600.0
SUBSCRIBE_TIMEOUT_S = 5.0
# How often the memory peaks are read from the store again: the longest a lost announcement shows.
PEAKS_READ_S = 60.0
# Close codes the page understands (4000-4999 are the application's own).
TOO_MANY_SOCKETS = 4429
BAD_FILTER = 4400
# Live computes run one at a time on a thread of their own: never on the thread that serves
# this process's ordinary requests, and never more than one core's worth however many views
# are open.
_COMPUTES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfdash-live")


class Broadcast:
    """The sockets of one view in this process, and its push loop."""

    # Per event loop (tests run several in one process) and view.
    _all: dict[tuple, Broadcast] = {}

    def __init__(self, key: tuple, view: panels.View):
        self.key, self.view = key, view
        # The first LIVE_MAX_VIEWS views of a process update every second, later ones less
        # often: each distinct view costs a compute per update, whoever asks for it.
        self.interval = (
            MIN_INTERVAL_S
            if self._views_in(key[0]) < settings.LIVE_MAX_VIEWS
            else settings.LIVE_SLOW_INTERVAL_S
        )
        self.sockets: set[LiveConsumer] = set()
        self.dirty = False
        self.last_send = 0.0
        self.computes: deque[float] = deque([0.05], maxlen=COMPUTE_SAMPLES)  # recent compute times
        self.task: asyncio.Task | None = None

    @classmethod
    def join(cls, socket: LiveConsumer) -> Broadcast:
        key = (asyncio.get_running_loop(), socket.view.key())
        broadcast = cls._all.get(key) or cls._all.setdefault(key, cls(key, socket.view))
        broadcast.sockets.add(socket)
        return broadcast

    def leave(self, socket: LiveConsumer) -> None:
        self.sockets.discard(socket)
        if not self.sockets:
            if self._all.get(self.key) is self:  # not a newer broadcast of the same view
                del self._all[self.key]
                if self.interval == MIN_INTERVAL_S:
                    self._promote(self.key[0])
            if self.task:
                self.task.cancel()

    @classmethod
    def _views_in(cls, loop) -> int:
        return sum(1 for owner, _ in cls._all if owner is loop)

    @classmethod
    def _promote(cls, loop) -> None:
        """A one-second slot came free: the oldest slow view takes it."""
        for (owner, _), broadcast in cls._all.items():  # dicts keep the order views opened in
            if owner is loop and broadcast.interval != MIN_INTERVAL_S:
                broadcast.interval = MIN_INTERVAL_S
                return

    @classmethod
    def announce(cls, event: str) -> None:
        """A worker's announcement: committed points and alert changes concern the metric pages,
        a refit the capacity pages (forecasts change hourly, not with every batch)."""
        loop = asyncio.get_running_loop()
        for (owner, _), broadcast in list(cls._all.items()):
            if owner is loop and (broadcast.view.page == "capacity") == (event == "forecasts.changed"):
                broadcast.changed()

    @classmethod
    def any_in(cls, loop: asyncio.AbstractEventLoop) -> bool:
        return any(owner is loop for owner, _ in cls._all)

    def changed(self) -> None:
        self.dirty = True
        if self.task is None:
            self.task = asyncio.create_task(self._run())

    def _send(self, socket: LiveConsumer, text: str) -> None:
        """Hand the update to one socket without waiting for it. A socket still taking the
        previous update (a viewer on a slow link: its sends wait for the network) skips this
        one and gets the next, so it never holds up the others nor falls further behind; a
        socket joined but not yet accepted gets the next one too."""
        if not socket.accepted or socket.sending:
            return
        # The socket holds its send task: asyncio alone would only hold it weakly.
        socket.sending = asyncio.create_task(socket.send(text_data=text))
        socket.sending.add_done_callback(lambda task: self._sent(socket, task))

    @staticmethod
    def _sent(socket: LiveConsumer, task: asyncio.Task) -> None:
        socket.sending = None
        if not task.cancelled():
            task.exception()  # a socket closing meanwhile: its disconnect cleans up

    async def _run(self) -> None:
        try:
            while self.dirty and self.sockets:
                # Start computing so that the result is ready when the next send is allowed.
                start_at = self.last_send + self.interval - statistics.median(self.computes)
                await asyncio.sleep(max(0.0, start_at - time.monotonic()))
                self.dirty = False
                started, read_at = time.monotonic(), time.time()
                live = Announcements.peaks_of(asyncio.get_running_loop())
                data = await sync_to_async(_compute, thread_sensitive=False, executor=_COMPUTES)(
                    self.view, live
                )
                self.computes.append(time.monotonic() - started)
                await asyncio.sleep(max(0.0, self.last_send + self.interval - time.monotonic()))
                self.last_send = time.monotonic()
                # read_at: everything committed before it is in this update; every: how often
                # this view updates (more than a second: the process has many views open).
                message = {
                    "type": "update",
                    "read_at": read_at,
                    "sent_at": time.time(),
                    "every": self.interval,
                    "data": data,
                }
                text = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
                for socket in self.sockets:
                    self._send(socket, text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: the next change retries
            log.info("live push stopped: %s", type(exc).__name__)
        finally:
            self.task = None


def _compute(view: panels.View, live: AgentPeaks | None) -> dict:
    """The page's data, on the live computes' thread, which keeps its own connection. Not
    through database_sync_to_async: that makes the next query first ask PostgreSQL whether the
    connection still works, one more round trip in every update. Instead a failure drops the
    connection and tries once more on a new one (PostgreSQL restarted since the last update:
    else that update, perhaps an hourly capacity one, would be lost)."""
    try:
        return _build(view, live)
    except (DatabaseError, psycopg.Error):  # psycopg's own: the binary cursors are not Django's
        connection.close()
        return _build(view, live)


def _build(view: panels.View | explore.Explore | boards.BoardView, live: AgentPeaks | None) -> dict:
    if isinstance(view, boards.BoardView):  # one view for all its panels: one socket per board
        return Board.data(view.slug, view.window) or {"error": f"no board {view.slug!r}"}
    if isinstance(view, explore.Explore):
        return explore.build(view)
    return panels.build(view, live)


class Announcements:
    """This process's one member of the "metrics" group, while it has sockets open: each
    committed batch is one channel-layer message per process instead of one per socket. It
    keeps the agents' memory peaks the announcements carry (peaks.py)."""

    _all: dict[asyncio.AbstractEventLoop, Announcements] = {}

    def __init__(self) -> None:
        self.listening = asyncio.Event()  # set while the membership is known to be in place
        self.joins = 0  # memberships made so far: a new one means announcements may have been missed
        self.joined = asyncio.Event()
        self.stopped = False
        self.peaks = AgentPeaks()
        self.task = asyncio.create_task(self._run())
        self.keeping = asyncio.create_task(self._keep_peaks())

    @classmethod
    def peaks_of(cls, loop: asyncio.AbstractEventLoop) -> AgentPeaks | None:
        """The memory peaks, if they hold every batch committed (else pages read the store)."""
        listener = cls._all.get(loop)
        return listener.peaks if listener and listener.peaks.complete else None

    @classmethod
    async def subscribe(cls) -> None:
        """Returns once this process receives the announcements (TimeoutError if Redis is away)."""
        loop = asyncio.get_running_loop()
        listener = cls._all.get(loop) or cls._all.setdefault(loop, cls())
        await asyncio.wait_for(listener.listening.wait(), SUBSCRIBE_TIMEOUT_S)

    @classmethod
    def unsubscribe_if_unused(cls) -> None:
        loop = asyncio.get_running_loop()
        if not Broadcast.any_in(loop) and (listener := cls._all.pop(loop, None)):
            listener.stopped = True  # in case the cancellation lands as a receive completes
            listener.task.cancel()
            listener.keeping.cancel()

    async def _run(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()  # a name only: no Redis round trip
        failing = False
        try:
            while not self.stopped:
                try:
                    await self._listen(layer, channel)
                    failing = False
                except Exception as exc:  # Redis is away: pages miss updates until it is back
                    self.listening.clear()
                    self.peaks.complete = False  # until read again
                    if not failing:  # once per outage, not every second
                        log.warning("live announcements interrupted: %s", type(exc).__name__)
                    failing = True
                    await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):  # else the membership expires by itself
                await layer.group_discard(GROUP, channel)

    async def _listen(self, layer, channel: str) -> None:
        await layer.group_add(GROUP, channel)
        self.joins += 1
        self.joined.set()
        self.listening.set()
        rejoin_at = time.monotonic() + REJOIN_S
        while not self.stopped and (left := rejoin_at - time.monotonic()) > 0:
            try:
                # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a
                # cancellation that lands as the receive completes.
                async with asyncio.timeout(left):
                    message = await layer.receive(channel)
            except TimeoutError:
                return
            self.peaks.add(message.get("memory", ()))
            Broadcast.announce(message["type"])

    async def _keep_peaks(self) -> None:
        """Reads every agent's memory peaks from the store once this process listens (again)
        and every PEAKS_READ_S after: from then on they hold every committed batch."""
        while not self.stopped:
            await self.listening.wait()
            joins = self.joins
            self.joined.clear()
            try:
                read = await database_sync_to_async(peaks.read)()
            except Exception as exc:  # the database is away: pages read the store meanwhile
                log.info("live memory peaks not read: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if self.listening.is_set() and self.joins == joins:  # listening all through the read
                self.peaks.drop_before(time.time() - peaks.KEEP_S)
                self.peaks.add(read)
                self.peaks.complete = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PEAKS_READ_S):
                    await self.joined.wait()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    # No channel of its own per socket: the process's Announcements listens for all of them.
    channel_layer_alias = "none"
    accepted = False
    sending: asyncio.Task | None = None  # the update being sent to it

    # Open sockets of this process, per user id.
    _per_user: dict[tuple[asyncio.AbstractEventLoop, int], int] = {}

    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close(code=4401)
            return
        if not self._count_in():
            # Accepted first: a browser sees the code of a close only after the handshake.
            await self.accept()
            await self.close(code=TOO_MANY_SOCKETS)
            return
        query_string = self.scope["query_string"].decode()
        params = {k: v[0] for k, v in parse_qs(query_string).items()}
        page = params.get("page", "overview")
        try:
            if page == explore.PAGE:  # its own view: several `stat=` may repeat
                self.view = explore.Explore.from_params(QueryDict(query_string))
            elif page.startswith(f"{boards.PAGE}/"):  # board/<slug>, the page's own data path
                window = boards.check_window(params.get("window", "").strip())
                self.view = boards.BoardView(slug=page.removeprefix(f"{boards.PAGE}/")[:100], window=window)
            else:
                self.view = panels.View.from_params(params, page=page if page in panels.PAGES else "overview")
        except (QueryError, boards.BoardError):  # accepted first, as above: the page reads the code
            await self.accept()
            await self.close(code=BAD_FILTER)
            return
        self.broadcast = Broadcast.join(self)  # before subscribing: a leaving socket must see it
        try:
            await Announcements.subscribe()
        except TimeoutError:  # the page shows "reconnecting" and tries again with backoff
            await self.close()
            return
        await self.accept()
        self.accepted = True
        if self.view.page == "capacity":
            # A refit that landed between the page's first load and this connect would
            # otherwise go unseen until the next one, an hour later.
            self.broadcast.changed()

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        # Pages never send anything: whatever arrives (a stray or malformed frame) is dropped
        # with one line, not parsed into a traceback.
        size = len(text_data or bytes_data or "")
        log.info("live socket: ignored a %d-byte message from the client", size)

    def _count_in(self) -> bool:
        """Counts this socket in, if its user and this process are both under their caps."""
        loop, user = asyncio.get_running_loop(), self.scope["user"].pk
        total = sum(n for (owner, _), n in self._per_user.items() if owner is loop)
        mine = self._per_user.get((loop, user), 0)
        if mine >= settings.LIVE_MAX_SOCKETS_PER_USER or total >= settings.LIVE_MAX_SOCKETS:
            return False
        self._per_user[(loop, user)] = mine + 1
        self.counted = (loop, user)
        return True

    def _count_out(self) -> None:
        counted = self.__dict__.pop("counted", None)
        if counted:
            left = self._per_user[counted] - 1
            if left:
                self._per_user[counted] = left
            else:
                del self._per_user[counted]

    async def disconnect(self, code: int) -> None:
        self._count_out()
        broadcast = self.__dict__.pop("broadcast", None)  # once, however often it is called
        if broadcast:
            broadcast.leave(self)
            Announcements.unsubscribe_if_unused()
