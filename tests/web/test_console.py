"""The web console in a real browser against a real Postgres and real workers (issue 21): every
page loads and shows what the database holds, a dead letter replayed from the page runs, a gate
flipped from the page changes where a call goes, and a write without the token is refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import psycopg
import pytest
from playwright.sync_api import Page, expect

from pgqueue import Client, admin, registry
from pgqueue.celery_adapter import CeleryDispatcher
from pgqueue.gating import Gate
from pgqueue.routing import RoutingDispatcher
from tests.support import runs
from tests.support.celery_redis import LegacyWorker
from tests.support.console import Console, ConsoleFactory, csrf_of, log_in
from tests.support.faultproxy import FaultProxy
from tests.support.postgres import PgServer
from tests.support.web_tasks import FIXED_DDL
from tests.support.workers import WorkerFactory, http_get, wait_until

pytestmark = pytest.mark.timeout(240)


def _enqueue(dsn: str, queue: str, n: int, *, tenant: str = "", task: str = "report.build") -> None:
    with Client(dsn) as client:
        for i in range(n):
            client.enqueue(task, [i], queue=queue, tenant=tenant, priority=1 + i % 10)


def _dead_letter(dsn: str, queue: str, payload: object, reason: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgqueue.dead_letter (msg_id, queue, task_name, payload, priority, tenant,"
            " enqueued_at, read_ct, reason) VALUES (0, %s, 'report.build', %s, 5, '', now(), 5,"
            " %s)",
            (queue, json.dumps(payload), reason),
        )


@pytest.fixture
def registered(pg_dsn: str) -> list[registry.WorkerInfo]:
    """Two worker rows written through pgqueue.registry, as far-away workers would write them,
    one gone stale (a real worker's own row is the subject of its own test below)."""
    infos = [
        registry.WorkerInfo("web-a:101", ("default", "reports"), slots=8, host="web-a", pid=101),
        registry.WorkerInfo("web-b:202", ("emails",), slots=4, host="web-b", pid=202),
    ]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for info in infos:
            registry.register(conn, info)
        registry.beat(conn, infos[0], busy=3)
        conn.execute(
            "UPDATE pgqueue.worker SET heartbeat_at = now() - interval '5 minutes'"
            " WHERE worker_id = 'web-b:202'"
        )
    return infos


def test_every_page_shows_what_the_database_holds(
    pg_dsn: str,
    consoles: ConsoleFactory,
    page: Page,
    shots: object,
    registered: list[registry.WorkerInfo],
) -> None:
    _enqueue(pg_dsn, "reports", 120, tenant="acme")
    _enqueue(pg_dsn, "reports", 5, tenant="globex", task="report.mail")
    _enqueue(pg_dsn, "emails", 3)
    with Client(pg_dsn) as client:
        client.enqueue("report.build", ["later"], queue="reports", delay=600)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # Three messages in flight, claimed by the real claim function as a worker would.
        claimed = conn.execute(
            "SELECT msg_id FROM pgqueue.claim('reports', 3, 3, 600, 'web-a:101', '', 1, 's')"
        ).fetchall()
        assert len(claimed) == 3
    _dead_letter(pg_dsn, "reports", {"args": [7], "kwargs": {"format": "pdf"}}, "too many attempts")
    _dead_letter(pg_dsn, "emails", {"args": ["x" * 10_000]}, "unknown task 'mail.send'")
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=False, value="off", source="cli ops@laptop")
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=True, value="on", source="cli ops@laptop")
    with Client(pg_dsn) as client:
        client.pause_queue("emails", reason="smtp relay down", by="cli ops@laptop")
    console = consoles.start(pg_dsn)
    log_in(page, console)  # the screenshots show the write controls too

    page.goto(console.url("/"))
    row = page.locator("#queue-table tr[data-queue=reports]")
    expect(row.locator(".ready")).to_have_text("122")
    expect(row.locator(".in-flight")).to_have_text("3")
    expect(row.locator(".delayed")).to_have_text("1")
    expect(row.locator(".dead")).to_have_text("1")
    expect(page.locator("#queue-table tr[data-queue=emails] .ready")).to_have_text("3")
    expect(page.locator("#queue-table tr[data-queue=emails] .pause")).to_have_text("paused")
    expect(row.locator(".pause")).to_have_text("-")
    page.screenshot(path=f"{shots}/queues.png", full_page=True)

    # Live: a message enqueued now shows without a reload (htmx polls the table).
    _enqueue(pg_dsn, "emails", 1)
    expect(page.locator("#queue-table tr[data-queue=emails] .ready")).to_have_text("4")

    page.goto(console.url("/queues/emails"))
    expect(page.locator("#queue-paused")).to_have_text("paused")
    page.goto(console.url("/"))
    page.click("text=reports")
    expect(page.locator("h1")).to_contain_text("reports")
    expect(page.locator("#queue-paused")).to_have_count(0)
    expect(page.locator("#messages tbody tr")).to_have_count(50)
    first_ids = page.locator("#messages tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.msgId))"
    )
    assert first_ids == sorted(first_ids)
    in_flight = page.locator("#messages tbody tr", has_text="in flight")
    expect(in_flight).to_have_count(3)
    expect(in_flight.first).to_contain_text("web-a:101")
    page.screenshot(path=f"{shots}/queue.png")
    page.click("#next-page")
    expect(page.locator("#messages tbody tr")).to_have_count(50)
    next_ids = page.locator("#messages tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.msgId))"
    )
    assert min(next_ids) > max(first_ids)
    page.select_option("select[name=state]", "delayed")
    page.click("text=filter")
    expect(page.locator("#messages tbody tr")).to_have_count(1)
    expect(page.locator("#messages tbody tr")).to_contain_text("delayed (9m")
    page.select_option("select[name=state]", "")
    page.fill("input[name=tenant]", "globex")
    page.click("text=filter")
    expect(page.locator("#messages tbody tr")).to_have_count(5)
    expect(page.locator("#messages tbody tr").first).to_contain_text("report.mail")
    page.fill("input[name=tenant]", "")
    page.fill("input[name=task]", "no.such.task")
    page.click("text=filter")
    expect(page.locator(".empty")).to_contain_text("No message matches")

    page.click("nav >> text=Dead letters")
    letters = page.locator("#dead-letters tbody tr")
    expect(letters).to_have_count(2)
    expect(page.locator("#dead-letters")).to_contain_text("too many attempts")
    expect(page.locator("#dead-letters")).to_contain_text("unknown task 'mail.send'")
    big = letters.filter(has_text="mail.send").locator("pre.payload")
    shown = big.text_content() or ""
    assert "more characters not shown" in shown
    assert len(shown) < 5000
    page.locator("details").first.evaluate("d => d.open = true")
    page.screenshot(path=f"{shots}/dead-letters.png", full_page=True)

    page.click("nav >> text=Gate")
    expect(page.locator("#gate-route")).to_have_text("Postgres (on)")
    expect(page.locator("#gate-source")).to_have_text("cli ops@laptop")
    expect(page.locator("#gate-history tbody tr")).to_have_count(2)
    page.screenshot(path=f"{shots}/gate.png", full_page=True)

    page.click("nav >> text=Workers")
    busy = page.locator("#worker-table tr[data-worker-id='web-a:101']")
    expect(busy).to_contain_text("3 / 8")
    expect(busy).to_contain_text("default, reports")
    expect(page.locator("#worker-table tr[data-worker-id='web-b:202'] .badge")).to_have_text(
        "stale"
    )
    page.screenshot(path=f"{shots}/workers.png", full_page=True)

    # No page may be framed (clickjacking of a confirmation button).
    response = page.goto(console.url("/gate"))
    assert response is not None
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

    # The DSN (its password included) and the token appear on no page.
    password = psycopg.conninfo.conninfo_to_dict(pg_dsn).get("password")
    for path in ("/queues", "/queues/reports", "/dead-letters", "/gate", "/workers", "/login"):
        page.goto(console.url(path))
        html = page.content()
        assert pg_dsn not in html
        assert console.token and console.token not in html
        if password:
            assert str(password) not in html


def test_a_filter_that_matches_little_searches_in_bounded_steps(
    pg_dsn: str, consoles: ConsoleFactory, page: Page
) -> None:
    _enqueue(pg_dsn, "reports", 120, tenant="acme")
    _enqueue(pg_dsn, "reports", 5, tenant="globex", task="report.mail")
    console = consoles.start(pg_dsn, env={"PGQUEUE_WEB_SCAN_LIMIT": "60"})
    page.goto(console.url("/queues/reports?tenant=globex"))
    # Each page looks at 60 messages at most: two steps find nothing, the third finds all five.
    for searched_to in ("60", "120"):
        expect(page.locator("#searched")).to_contain_text(f"Searched up to message {searched_to}")
        expect(page.locator("#messages")).to_have_count(0)
        expect(page.locator("#next-page")).to_have_text("search on →")
        page.click("#next-page")
    expect(page.locator("#messages tbody tr")).to_have_count(5)
    expect(page.locator("#searched")).to_have_count(0)
    expect(page.locator("#next-page")).to_have_count(0)


def test_a_replayed_dead_letter_runs(
    pg_dsn: str, consoles: ConsoleFactory, page: Page, workers: WorkerFactory
) -> None:
    runs.create_runs_table(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(FIXED_DDL)
    workers.start(
        pg_dsn, tasks="tests.support.web_tasks", env={"PGQUEUE_MAX_ATTEMPTS": "1"}, concurrency=2
    )
    with Client(pg_dsn) as client:
        for key in ("job-1", "job-2", "job-3"):
            client.enqueue("web.until_fixed", [key])
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 3,
        60,
        "three dead letters",
    )
    # The bug is fixed for two of them; the operator replays one, then a selection.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO web_fixed VALUES ('job-1'), ('job-2')")
    console = consoles.start(pg_dsn)
    log_in(page, console)
    page.goto(console.url("/dead-letters"))
    row = page.locator("#dead-letters tbody tr", has_text="job-1")
    expect(row).to_contain_text("job-1 is still broken")
    row.locator(".replay-one").click()
    expect(page.locator("#flash")).to_contain_text("Replayed 1")
    wait_until(
        lambda: (
            runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE key='job-1' AND phase='end'")
            == 1
        ),
        60,
        "the replayed job-1 to run to its end",
    )
    expect(page.locator("#dead-letters tbody tr")).to_have_count(2)
    page.locator("#dead-letters tbody tr", has_text="job-2").locator("input[type=checkbox]").check()
    page.click("#replay-selected")
    expect(page.locator("#flash")).to_contain_text("Replayed 1")
    wait_until(
        lambda: (
            runs.scalar(pg_dsn, "SELECT count(*) FROM test_runs WHERE key='job-2' AND phase='end'")
            == 1
        ),
        60,
        "the replayed job-2 to run to its end",
    )
    # job-3 is still broken: purging asks first, then deletes it.
    page.goto(console.url("/dead-letters"))
    expect(page.locator("#dead-letters tbody tr")).to_have_count(1)
    page.click("#purge")
    expect(page.locator("h1")).to_have_text("Purge dead letters?")
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1
    page.click("#confirm")
    expect(page.locator("#flash")).to_contain_text("Purged 1")
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0


@pytest.fixture
def router(
    pg_dsn: str, workers: WorkerFactory, legacy_worker: LegacyWorker
) -> Iterator[RoutingDispatcher]:
    runs.create_runs_table(pg_dsn)
    workers.start(pg_dsn, tasks="tests.support.gate_tasks", env={"PGQUEUE_TEST_ROUTE": "pg"})
    client = Client(pg_dsn)
    gate = Gate(pg_dsn, ttl=0.2)
    try:
        yield RoutingDispatcher(client, CeleryDispatcher(legacy_worker.app), gate)
    finally:
        gate.close()
        client.close()


def _route_of(router: RoutingDispatcher, key: str) -> str:
    result = router.call("gate.tagged", [key], timeout=30)
    assert result.kind == "ok", result
    return str(result.value["route"])


def test_a_gate_flipped_in_the_console_moves_calls(
    pg_dsn: str, consoles: ConsoleFactory, page: Page, router: RoutingDispatcher
) -> None:
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=False, value="off", source="test")
    assert _route_of(router, "before") == "celery"
    console = consoles.start(pg_dsn)
    log_in(page, console)
    page.goto(console.url("/gate"))
    expect(page.locator("#gate-route")).to_have_text("the fallback (off)")
    page.click("#flip")
    # A confirmation first: nothing has moved yet.
    expect(page.locator("h1")).to_have_text("Turn the gate on?")
    assert _route_of(router, "unconfirmed") == "celery"
    page.click("#confirm")
    expect(page.locator("#gate-route")).to_have_text("Postgres (on)")
    expect(page.locator("#gate-source")).to_contain_text("web console")
    counter = iter(range(1000))
    wait_until(
        lambda: _route_of(router, f"after-on-{next(counter)}") == "pg", 30, "calls to go to pg"
    )
    page.click("#flip")
    page.click("#confirm")
    expect(page.locator("#gate-route")).to_have_text("the fallback (off)")
    wait_until(
        lambda: _route_of(router, f"after-off-{next(counter)}") == "celery",
        30,
        "calls to go back to celery",
    )
    expect(page.locator("#gate-history tbody tr")).to_have_count(3)


def test_a_configmap_managed_gate_says_a_flip_here_is_overwritten(
    pg_dsn: str, consoles: ConsoleFactory, page: Page
) -> None:
    admin.set_flag(
        pg_dsn, admin.GATE_FLAG, enabled=True, value="true", source="configmap prod/gate@4711"
    )
    console = consoles.start(pg_dsn)
    page.goto(console.url("/gate"))
    expect(page.locator("#configmap-note")).to_contain_text("configmap prod/gate@4711")
    expect(page.locator("#configmap-note")).to_contain_text("overwrite")


def _post(page: Page, console: Console, path: str, form: dict[str, str]) -> tuple[int, str]:
    response = page.request.post(console.url(path), form=form, max_redirects=0)
    return response.status, response.text()


def test_writes_without_the_token_or_csrf_are_refused(
    pg_dsn: str, consoles: ConsoleFactory, page: Page
) -> None:
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=False, value="off", source="test")
    _dead_letter(pg_dsn, "reports", {"args": [1]}, "too many attempts")
    console = consoles.start(pg_dsn)

    # What the database holds is shown as text, never run as markup.
    _dead_letter(
        pg_dsn, "reports", {"html": "<img src=x onerror='window.pwned=2'>"},
        "<script>window.pwned = 1</script>",
    )  # fmt: skip
    page.goto(console.url("/dead-letters"))
    expect(page.locator("#dead-letters")).to_contain_text("<script>window.pwned = 1</script>")
    assert page.evaluate("window.pwned") is None

    # Not logged in: no write button is shown, and a forged POST with a valid CSRF is refused.
    page.goto(console.url("/dead-letters"))
    expect(page.locator(".replay-one")).to_have_count(0)
    page.goto(console.url("/gate"))
    expect(page.locator("#flip")).to_have_count(0)
    page.goto(console.url("/login"))
    csrf = csrf_of(page)
    status, body = _post(page, console, "/gate", {"csrf": csrf, "to": "on", "confirm": "yes"})
    assert status == 403
    assert "log in with the write token" in body
    status, _ = _post(page, console, "/dead-letters/purge", {"csrf": csrf, "confirm": "yes"})
    assert status == 403
    # A wrong token does not log in.
    page.fill("input[name=token]", "not-the-token-at-all")
    page.click("#login")
    expect(page.locator(".error")).to_have_text("wrong write token")

    # Logged in, but a POST without the session's CSRF token (a cross-site form) is refused.
    log_in(page, console)
    status, body = _post(page, console, "/gate", {"to": "on", "confirm": "yes"})
    assert status == 403
    assert "CSRF" in body
    status, _ = _post(page, console, "/gate", {"csrf": csrf, "to": "on", "confirm": "yes"})
    assert status == 403, "the CSRF token from before the login must not work after it"
    state = admin.get_flag(pg_dsn, admin.GATE_FLAG)
    assert state is not None and state.value == "off"
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 2

    # A console started without a token refuses every write, logged in or not.
    readonly = consoles.start(pg_dsn, token=None)
    page.goto(readonly.url("/login"))
    expect(page.locator("main")).to_contain_text("read-only for everyone")
    csrf = csrf_of(page)
    status, body = _post(page, readonly, "/gate", {"csrf": csrf, "to": "on", "confirm": "yes"})
    assert status == 403
    assert "started without a write token" in body
    status, _ = _post(page, readonly, "/login", {"csrf": csrf, "token": console.token or ""})
    assert status == 403
    state = admin.get_flag(pg_dsn, admin.GATE_FLAG)
    assert state is not None and state.value == "off"


def test_behind_a_path_prefix(pg_dsn: str, consoles: ConsoleFactory, page: Page) -> None:
    _enqueue(pg_dsn, "reports", 2)
    console = consoles.start(pg_dsn, root_path="/ops/pgqueue")
    page.goto(console.url("/queues"))
    expect(page.locator("#queue-table tr[data-queue=reports] .ready")).to_have_text("2")
    # htmx came from the prefixed static path, and every link keeps the prefix.
    assert page.evaluate("typeof window.htmx") == "object"
    hrefs = page.locator("a[href^='/']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert hrefs and all(h.startswith("/ops/pgqueue/") for h in hrefs), hrefs
    page.click("text=reports")
    expect(page).to_have_url(console.url("/queues/reports"))
    # An ingress that strips the prefix reaches the same pages.
    stripped = console.base.removesuffix("/ops/pgqueue")
    page.goto(stripped + "/gate")
    expect(page.locator("h1")).to_contain_text("Gate")
    assert page.locator("nav a").first.get_attribute("href") == "/ops/pgqueue/queues"


def test_a_database_outage_is_a_page_that_says_so(
    pg_dsn: str,
    pg_server: PgServer,
    consoles: ConsoleFactory,
    page: Page,
    proxy_factory: Callable[[str, int], FaultProxy],
) -> None:
    _enqueue(pg_dsn, "reports", 2)
    proxy = proxy_factory(pg_server.host, pg_server.port)
    console = consoles.start(proxy.dsn_for(pg_dsn))
    page.goto(console.url("/queues"))
    expect(page.locator("#queue-table tr[data-queue=reports] .ready")).to_have_text("2")

    proxy.refuse()
    response = page.goto(console.url("/gate"))
    assert response is not None and response.status == 503
    expect(page.locator("#unavailable")).to_contain_text("did not answer")
    assert pg_dsn not in page.content()
    wait_until(lambda: http_get(console.url("/healthz"), 10)[0] == 503, 30, "/healthz 503")

    proxy.resume()
    wait_until(lambda: http_get(console.url("/healthz"), 10)[0] == 200, 60, "/healthz 200 again")
    page.goto(console.url("/gate"))
    expect(page.locator("#gate-route")).to_have_text("the fallback (off)")


def test_a_running_worker_shows_on_the_workers_page_and_leaves_it_when_it_stops(
    pg_dsn: str, consoles: ConsoleFactory, page: Page, workers: WorkerFactory
) -> None:
    # A real `pgqueue worker` registers when it connects, beats from its loop and deregisters at
    # a clean stop: the page lists what runs, not what a test wrote.
    worker = workers.start(
        pg_dsn,
        queues="default,reports",
        concurrency=3,
        env={"PGQUEUE_WORKER_ID": "console-worker-1"},
    )
    console = consoles.start(pg_dsn)
    page.goto(console.url("/workers"))
    row = page.locator('#worker-table tr[data-worker-id="console-worker-1"]')
    expect(row).to_contain_text("default, reports")
    expect(row).to_contain_text("/ 3")
    expect(row).to_contain_text(str(worker.pid))
    expect(row).not_to_have_class("stale")
    assert worker.terminate() == 0
    page.reload()
    expect(page.locator('#worker-table tr[data-worker-id="console-worker-1"]')).to_have_count(0)
