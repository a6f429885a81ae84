"""An async client for the few Kalshi REST endpoints watcher needs (kalshi-protocol.md §11).

It owns one :class:`httpx.AsyncClient` and is an async context manager::

    async with KalshiRestClient(PROD_API_URL, signer=signer) as rest:
        market = await rest.get_market("FED-23DEC-T3.00")

When a signer is given, every request carries fresh ``KALSHI-ACCESS-*`` headers signed over
``timestamp + "GET" + path``, where ``path`` is the request's URL path as sent (it includes
``/trade-api/v2``) without the query string (§2.1). httpx errors and error statuses are
translated at this boundary into :mod:`watcher.kalshi.errors`:

==========================  ======================================================
HTTP 401 / 403              :class:`~watcher.kalshi.errors.AuthenticationFailed`
HTTP 429                    :class:`~watcher.kalshi.errors.RateLimited`
HTTP 404                    :class:`~watcher.kalshi.errors.RestError` ``status=404``
                            (``"market not found: …"``, ``"event …"``, ``"series …"``)
any other non-2xx status    :class:`~watcher.kalshi.errors.RestError` with ``status``
timeout, connection error   :class:`~watcher.kalshi.errors.RestError` (``status=None``)
a body that doesn't decode  :class:`~watcher.kalshi.errors.DecodeError`
==========================  ======================================================

Neither the private key nor credentials embedded in the base URL appear in a repr, log line
or error message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, TypeVar
from urllib.parse import quote

import httpx

from watcher.kalshi import USER_AGENT
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.errors import AuthenticationFailed, DecodeError, RateLimited, RestError
from watcher.kalshi.fee_changes import (
    MAX_FEE_CHANGES_LIMIT,
    RestEventFeeChange,
    RestEventFeeChangesResponse,
    rfc3339_ms,
)
from watcher.kalshi.messages import (
    RestEvent,
    RestEventResponse,
    RestEventsResponse,
    RestMarket,
    RestMarketResponse,
    RestOrderbook,
    RestOrderbookResponse,
    RestSeries,
    RestSeriesResponse,
    RestTrade,
    RestTradesResponse,
    Trade,
    TradeMsg,
    decode_rest,
)

__all__ = ["MAX_TRADES_LIMIT", "KalshiRestClient", "trade_from_rest"]

logger = logging.getLogger("watcher.rest")

#: The largest ``limit`` Kalshi accepts on ``GET /markets/trades``.
MAX_TRADES_LIMIT = 1000
#: The largest ``limit`` Kalshi accepts on ``GET /events``.
MAX_EVENTS_LIMIT = 200
BODY_PREVIEW = 200

_T = TypeVar("_T")
Params = dict[str, str | int]


class _Page(Protocol):  # one page of a listing: ``cursor`` names the next, empty on the last
    @property
    def cursor(self) -> str | None: ...


_P = TypeVar("_P", bound=_Page)


class KalshiRestClient:
    """Read-only Kalshi REST client.

    Args:
        base_url: the API root including ``/trade-api/v2``, e.g.
            ``"https://external-api.kalshi.com/trade-api/v2"``.
        signer: signs every request when given; market data endpoints work without one.
        timeout: seconds allowed for connecting, each read and each write.
        transport: an httpx transport to use instead of the network (proxies, tests).
        user_agent: the ``User-Agent`` header; name your application in it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        signer: KalshiSigner | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._signer = signer
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": user_agent},
        )
        self._origin = _origin(self._client.base_url)

    # Public methods

    async def get_market(self, ticker: str) -> RestMarket:
        """``GET /markets/{ticker}``: status, close time, prices of one market.

        Raises:
            RestError: ``status=404`` with ``"market not found: TICKER"``, another error
                status, or a transport failure.
            AuthenticationFailed: HTTP 401/403.
            RateLimited: HTTP 429.
            DecodeError: the body is not a market.
        """
        body = await self._get(f"/markets/{_quote(ticker)}", ticker=ticker)
        return self._decode(body, RestMarketResponse, ticker).market

    async def get_orderbook(self, ticker: str, *, depth: int = 0) -> RestOrderbook:
        """``GET /markets/{ticker}/orderbook``: the bids of both legs (for a book resync).

        Args:
            ticker: the market.
            depth: levels per side, 1–100; 0 means all.

        Raises:
            Same as :meth:`get_market`.
        """
        params: Params = {"depth": depth} if depth > 0 else {}
        body = await self._get(f"/markets/{_quote(ticker)}/orderbook", ticker=ticker, params=params)
        return self._decode(body, RestOrderbookResponse, ticker).orderbook_fp

    async def get_event(self, event_ticker: str, *, with_nested_markets: bool = True) -> RestEvent:
        """``GET /events/{event_ticker}``: the event, with its ``series_ticker`` (§14) and its
        markets in :attr:`RestEvent.markets` (Kalshi nests them with ``with_nested_markets``,
        else puts them beside the event; both are accepted).

        Raises:
            RestError: ``status=404`` with ``"event not found: TICKER"``, another error status,
                or a transport failure.
            AuthenticationFailed, RateLimited, DecodeError: as for :meth:`get_market`.
        """
        path = f"/events/{_quote(event_ticker)}"
        params: Params = {"with_nested_markets": "true"} if with_nested_markets else {}
        body = await self._get(path, ticker=event_ticker, params=params, what="event")
        return self._decode(body, RestEventResponse, event_ticker).full_event()

    async def get_events(
        self,
        *,
        series_ticker: str,
        status: str | None = "open",
        with_nested_markets: bool = True,
        limit: int = MAX_EVENTS_LIMIT,
        max_pages: int = 100,
    ) -> list[RestEvent]:
        """``GET /events?series_ticker=...``: the events of a series, following ``cursor``.

        Args:
            series_ticker: the series.
            status: ``unopened``, ``open``, ``closed``, ``settled``, or None for all.
            with_nested_markets: ask for each event's markets (in :attr:`RestEvent.markets`).
            limit: events per page, 1–200.
            max_pages: stop after this many pages even if Kalshi has more (logged).

        Raises:
            ValueError: ``limit`` or ``max_pages`` is out of range.
            Same as :meth:`get_market` otherwise.
        """
        if not 1 <= limit <= MAX_EVENTS_LIMIT or max_pages < 1:
            raise ValueError(f"limit must be 1–{MAX_EVENTS_LIMIT} and max_pages at least 1")
        params: Params = {"series_ticker": series_ticker, "limit": limit}
        if status:
            params["status"] = status
        if with_nested_markets:
            params["with_nested_markets"] = "true"
        pages = self._pages(
            "/events", params, RestEventsResponse, series_ticker, max_pages, "series"
        )
        return [event async for page in pages for event in page.events]

    async def get_series(self, series_ticker: str) -> RestSeries:
        """``GET /series/{series_ticker}``: the series, with its ``fee_type`` and
        ``fee_multiplier`` (§14).

        Raises:
            RestError: ``status=404`` with ``"series not found: TICKER"``, another error status,
                or a transport failure.
            AuthenticationFailed, RateLimited, DecodeError: as for :meth:`get_market`.
        """
        path = f"/series/{_quote(series_ticker)}"
        body = await self._get(path, ticker=series_ticker, what="series")
        return self._decode(body, RestSeriesResponse, series_ticker).series

    async def get_trades(
        self, ticker: str, *, min_ts: int | None = None, limit: int = 1000, max_pages: int = 10
    ) -> list[RestTrade]:
        """``GET /markets/trades?ticker=...``: public trades of one market, following ``cursor``.

        Args:
            ticker: the market.
            min_ts: only trades at or after this Unix time, in **seconds** (Kalshi's unit).
            limit: trades per page, 1–1000.
            max_pages: stop after this many pages even if Kalshi has more (logged).

        Returns:
            The trades in the order Kalshi returned them (newest first).

        Raises:
            ValueError: ``limit`` or ``max_pages`` is out of range.
            Same as :meth:`get_market` otherwise.
        """
        if not 1 <= limit <= MAX_TRADES_LIMIT or max_pages < 1:
            raise ValueError(
                f"limit must be 1–{MAX_TRADES_LIMIT} and max_pages at least 1,"
                f" but got {limit} and {max_pages}"
            )
        params: Params = {"ticker": ticker, "limit": limit}
        if min_ts is not None:
            params["min_ts"] = min_ts
        pages = self._pages("/markets/trades", params, RestTradesResponse, ticker, max_pages)
        return [trade async for page in pages for trade in page.trades]

    async def get_event_fee_changes(
        self, event_ticker: str, *, cursor: str | None = None, limit: int | None = None
    ) -> list[RestEventFeeChange]:
        """``GET /events/fee_changes?event_ticker=...``: the event's fee overrides, each set
        or cleared (both fields None) from its ``scheduled_ts`` on, in Kalshi's order and
        exactly decoded (:mod:`watcher.kalshi.fee_changes`), following ``cursor`` (at most
        100 pages, logged).

        Args:
            event_ticker: the event.
            cursor: start from this page (an earlier answer's ``cursor``); None: the first.
            limit: changes per page, 1–1000; None leaves Kalshi's default (100).

        Raises:
            ValueError: ``limit`` is out of range.
            RestError: ``status=404`` (``"event fee changes not found: TICKER"``: an API
                without the endpoint), another error status, or a transport failure.
            AuthenticationFailed, RateLimited, DecodeError: as for :meth:`get_market`.
        """
        if limit is not None and not 1 <= limit <= MAX_FEE_CHANGES_LIMIT:
            raise ValueError(f"limit must be 1–{MAX_FEE_CHANGES_LIMIT}, but got {limit}")
        params: Params = {"event_ticker": event_ticker}
        params.update({"limit": limit} if limit is not None else {})
        params.update({"cursor": cursor} if cursor else {})
        path, what = "/events/fee_changes", "event fee changes"
        pages = self._pages(path, params, RestEventFeeChangesResponse, event_ticker, 100, what)
        return [change async for page in pages for change in page.event_fee_changes]

    async def aclose(self) -> None:
        """Close the connection pool. Safe to call twice."""
        await self._client.aclose()

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._client.is_closed

    async def __aenter__(self) -> KalshiRestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        auth = f"signed ({self._signer.algorithm})" if self._signer else "unsigned"
        state = "closed" if self.is_closed else "open"
        path = self._client.base_url.path.rstrip("/")
        return f"<KalshiRestClient {self._origin}{path} {auth} {state}>"

    # Private methods

    async def _pages(
        self,
        path: str,
        params: Params,
        type_: type[_P],
        ticker: str,
        max_pages: int,
        what: str = "market",
    ) -> AsyncIterator[_P]:
        """Each page of a listing, following ``cursor`` (``params`` carries it) until it is
        empty or ``max_pages`` were read (logged)."""
        for _ in range(max_pages):
            page = self._decode(
                await self._get(path, ticker=ticker, params=params, what=what), type_, ticker
            )
            yield page
            if not page.cursor:
                return
            params["cursor"] = page.cursor
        logger.info(
            "stopped after %d pages of GET %s for %s with more left", max_pages, path, ticker
        )

    async def _get(
        self, path: str, *, ticker: str, params: Params | None = None, what: str = "market"
    ) -> bytes:
        request = self._client.build_request("GET", path, params=params)
        sign_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
        if self._signer is not None:
            request.headers.update(self._signer.headers("GET", sign_path))
        logger.debug("> GET %s", sign_path)
        try:
            response = await self._client.send(request)
        except httpx.TimeoutException as exc:
            raise RestError(
                f"kalshi REST request timed out after {self._timeout}s:"
                f" GET {self._origin}{sign_path} ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise RestError(
                f"kalshi REST request failed: GET {self._origin}{sign_path}:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        logger.debug("< %d GET %s", response.status_code, sign_path)
        self._check_status(response, sign_path, f"{what} not found: {ticker}")
        return response.content

    def _check_status(self, response: httpx.Response, path: str, not_found: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        where = f"HTTP {status} on GET {path}"
        if status in (401, 403):
            hint = (
                "check KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH"
                " (and that the key is for this environment)"
                if self._signer
                else "this request must be signed:"
                " set KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH"
            )
            raise AuthenticationFailed(f"kalshi refused the request: {where}; {hint}")
        if status == 429:
            raise RateLimited(f"kalshi rate limit reached: {where}: {_preview(response)}")
        if status == 404:
            raise RestError(not_found, status=404)
        raise RestError(f"kalshi REST error: {where}: {_preview(response)}", status=status)

    def _decode(self, body: bytes, type_: type[_T], ticker: str) -> _T:
        try:
            result: _T = decode_rest(body, type_)
        except DecodeError as exc:
            raise DecodeError(f"bad kalshi REST body for {ticker}: {exc}", body) from exc
        return result


def _quote(ticker: str) -> str:
    """Percent-encode a ticker as one path segment (``/`` included)."""
    return quote(ticker, safe="")


def _origin(url: httpx.URL) -> str:
    """``scheme://host[:port]`` without credentials, for messages and the repr."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}"


def _preview(response: httpx.Response) -> str:
    text = response.content[:BODY_PREVIEW].decode("utf-8", "replace")
    return repr(" ".join(text.split())) if text.strip() else "(empty body)"


def trade_from_rest(trade: RestTrade) -> Trade:
    """A ``trade`` frame built from a REST trade (``created_time`` gives the time if needed)."""
    ts_ms = trade.ts_ms if trade.ts_ms is not None else rfc3339_ms(trade.created_time)
    msg = TradeMsg(
        trade_id=trade.trade_id,
        market_ticker=trade.ticker,
        yes_price_dollars=trade.yes_price_dollars,
        no_price_dollars=trade.no_price_dollars,
        count_fp=trade.count_fp,
        taker_side=trade.taker_side,
        ts=None if ts_ms is None else ts_ms // 1000,
        ts_ms=ts_ms,
    )
    return Trade(msg=msg)
