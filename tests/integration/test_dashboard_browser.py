"""The supervisor dashboard in a real headless Chromium (Debian's), driven by Selenium, against real workers.

One dashboard (``python -m producers dashboard`` with an admin and a
read-only login) and one browser serve the whole module. A session is seeded
with two hostile student names held by ``alice`` and ``mallory`` and a plain
student held by ``bob``; 20 simulated assistants then work through the rest
while the sessions page is open. Screenshots of both pages are written to
tests/artifacts/.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from callqueue.config import Settings
from devstack.assistants import AssistantLog, Behaviour, run_assistants
from devstack.servers import Dashboard
from devstack.stack import Stack
from callqueue.producers.client import AssignmentClient

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"]
IMG_PAYLOAD = "<img src=x onerror=alert(1)>"
SCRIPT_PAYLOAD = "</script><script>window.__pwned = 1; alert(2)</script>"
DEADLINE_SECONDS = 30.0
T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """``read`` until ``done`` accepts it; a read that meets an element the live update just replaced reads again."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            value = read()
        except (StaleElementReferenceException, NoSuchElementException) as exc:
            value = exc  # type: ignore[assignment]
        else:
            if done(value):
                return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {DEADLINE_SECONDS:.0f}s; last value: {value!r}")
        time.sleep(0.2)


OPEN_BROWSERS: list[WebDriver] = []


def page_text() -> str:
    """What the open browser shows (its address and text), for a failure's message."""
    if not OPEN_BROWSERS:
        return "(no browser)"
    browser = OPEN_BROWSERS[0]
    return f"{browser.current_url}\n{browser.execute_script('return document.body.innerText')[:1500]}"


class Site:
    """The running dashboard and its two logins."""

    def __init__(self, server: Dashboard, passwords: dict[str, str], session_id: str) -> None:
        self.server = server
        self.passwords = passwords
        self.session_id = session_id

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def logged_in(self, user: str) -> requests.Session:
        """A hand-made HTTP client logged in as ``user`` (form login, with the CSRF token of the login page)."""
        http = requests.Session()
        token = csrf_of(http.get(self.url("/login"), timeout=10).text)
        answer = http.post(self.url("/login"), data={"csrf": token, "username": user,
                                                     "password": self.passwords[user]}, timeout=10)
        assert answer.status_code == 200 and answer.url == self.url("/"), answer.status_code
        return http


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture(scope="module")
def site(stack: Stack, server_env: dict[str, str], settings: Settings,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    session_id = f"dash-{uuid.uuid4().hex[:10]}"
    with AssignmentClient(settings, timeout_seconds=15) as client:
        client.import_students(session_id, [{"student_id": "img", "name": IMG_PAYLOAD, "priority": 3},
                                            {"student_id": "script", "name": SCRIPT_PAYLOAD, "priority": 2},
                                            {"student_id": "plain", "name": "Plain Student", "priority": 1}]
                               + [{"student_id": f"s{n:03d}", "name": f"Student {n}"} for n in range(240)],
                               session_name="Evening calls")
        for assistant in ("alice", "mallory", "bob", "dave"):  # dave is logged off by the admin's test
            assert client.assign_next(session_id, assistant) is not None
    passwords = {"boss": secrets.token_urlsafe(12), "eve": secrets.token_urlsafe(12)}
    env = {**server_env, "CALLQUEUE_DASHBOARD_ADMIN_AUTH": f"boss:{passwords['boss']}",
           "CALLQUEUE_DASHBOARD_VIEWER_AUTH": f"eve:{passwords['eve']}", "CALLQUEUE_DASHBOARD_POLL_SECONDS": "0.5"}
    server = Dashboard(tmp_path_factory.mktemp("dashboard"), env)
    try:
        yield Site(server.start(), passwords, session_id)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("apt-get install chromium chromium-driver (Debian's packages)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    OPEN_BROWSERS.append(driver)
    try:
        yield driver
    finally:
        OPEN_BROWSERS.remove(driver)
        driver.quit()


def log_in(browser: WebDriver, site: Site, user: str, path: str = "/") -> None:
    browser.delete_all_cookies()
    browser.get(site.url(path))
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(site.passwords[user])
    browser.find_element(By.ID, "login-button").click()
    poll(lambda: browser.find_elements(By.ID, "user-name"), bool, f"{user} logged in")


def no_script_ran(browser: WebDriver) -> None:
    """Neither payload ran: no alert is open and the flag the script payload would set is unset."""
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert browser.execute_script("return window.__pwned === undefined") is True


def figure(browser: WebDriver, session_id: str, name: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, f'tr[data-session="{session_id}"] [data-figure="{name}"]').text


def test_every_page_and_stream_answers_401_without_a_login(site: Site) -> None:
    for path in ("/", f"/session?id={site.session_id}", "/?status=closed", "/live/sessions",
                 f"/live/session?id={site.session_id}"):
        assert requests.get(site.url(path), timeout=10).status_code == 401, path
    refused = requests.post(site.url("/actions/release-assistant"),
                            data={"session_id": site.session_id, "assistant_id": "bob"}, timeout=10)
    assert refused.status_code == 401
    assert site.passwords["boss"] not in requests.get(site.url("/"), timeout=10).text


def test_the_sessions_page_changes_live_while_20_assistants_work(site: Site, browser: WebDriver, settings: Settings,
                                                                artifacts_dir: Path) -> None:
    log_in(browser, site, "boss", f"/?q={site.session_id}")
    assert site.passwords["boss"] not in browser.current_url + browser.page_source
    browser.execute_script("window.__sameDocument = 'yes'")
    before = poll(lambda: figure(browser, site.session_id, "completed"), lambda _: True, "the completed count")
    logs: list[AssistantLog] = []
    work = threading.Thread(target=lambda: logs.extend(run_assistants(
        settings, site.session_id, [f"assistant-{n:02d}" for n in range(20)],
        Behaviour(call_seconds=0.4, max_presses=12, timeout_seconds=15))))
    work.start()
    try:
        seen = poll(lambda: {figure(browser, site.session_id, "completed")}, lambda now: now != {before},
                    "the completed count changing")
        poll(lambda: figure(browser, site.session_id, "presses"), lambda text: int(text) > 0, "presses per minute")
        assert browser.execute_script("return window.__sameDocument") == "yes", "the page was reloaded"
        assert int(seen.pop()) > int(before)
        screenshot = artifacts_dir / "dashboard-sessions.png"
        browser.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 20_000
    finally:
        work.join(120)
    assert not any(log.errors for log in logs), [log.errors for log in logs]
    assert int(poll(lambda: figure(browser, site.session_id, "active"), lambda text: int(text) >= 20,
                    "20 active assistants")) >= 20


def test_the_session_page_shows_who_holds_whom_and_the_chart(site: Site, browser: WebDriver, settings: Settings,
                                                             artifacts_dir: Path) -> None:
    with AssignmentClient(settings, timeout_seconds=15) as client:  # a completion for the chart, whatever ran before
        client.import_students(site.session_id, [{"student_id": "for-erin", "name": "Erin's", "priority": 9}])
        held = client.assign_next(site.session_id, "erin")
        client.complete(site.session_id, held.student_id, "erin", "reached", held.assignment_token)
    log_in(browser, site, "boss", f"/session?id={site.session_id}")
    poll(lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-assistant="bob"] .student-name').text,
         lambda name: name == "Plain Student", "bob holding Plain Student")
    bars = poll(lambda: [float(bar.get_attribute("height"))
                         for bar in browser.find_elements(By.CSS_SELECTOR, "#completions-chart rect.bar")],
                lambda heights: any(height > 0 for height in heights), "a completion bar in the chart")
    assert len(bars) == 61
    poll(lambda: browser.find_element(By.ID, "live-state").text, lambda text: text == "live", "the live stream")
    screenshot = artifacts_dir / "dashboard-session.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 20_000


def test_hostile_student_names_are_shown_as_text_and_never_run(site: Site, browser: WebDriver) -> None:
    log_in(browser, site, "boss", f"/session?id={site.session_id}")
    poll(lambda: browser.find_element(By.ID, "live-state").text, lambda text: text == "live", "a live update")
    held = poll(lambda: {row.get_attribute("data-assistant"): row.find_element(By.CSS_SELECTOR,
                                                                            ".holding .student-name").text
                         for row in browser.find_elements(By.CSS_SELECTOR, "#assistants-table tr[data-assistant]")
                         if row.get_attribute("data-assistant") in ("alice", "mallory")},
                lambda names: names == {"alice": IMG_PAYLOAD, "mallory": SCRIPT_PAYLOAD}, "the hostile names")
    assert held == {"alice": IMG_PAYLOAD, "mallory": SCRIPT_PAYLOAD}
    assert browser.find_elements(By.CSS_SELECTOR, "#assistants-table img") == []
    no_script_ran(browser)


def test_an_admin_logs_an_assistant_off_and_the_page_shows_it(site: Site, browser: WebDriver,
                                                              settings: Settings) -> None:
    log_in(browser, site, "boss", f"/session?id={site.session_id}")
    poll(lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-assistant="dave"] button.release-assistant').click(),
         lambda _: True, "the log-off button clicked")
    flash = poll(lambda: browser.find_elements(By.ID, "flash"), bool, "the action's message")[0].text
    assert flash == "released 1 student(s) held by dave"
    poll(lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-assistant="dave"] td.holding').text,
         lambda text: text == "–", "dave holding nobody")
    with AssignmentClient(settings, timeout_seconds=15) as client:
        assert "dave" not in client.stats(site.session_id).holders


def test_a_read_only_user_sees_everything_and_is_refused_every_action(site: Site, browser: WebDriver,
                                                                      settings: Settings) -> None:
    log_in(browser, site, "eve", f"/session?id={site.session_id}")
    assert browser.find_element(By.CSS_SELECTOR, ".role").text == "viewer"
    assert browser.find_elements(By.CSS_SELECTOR, "button.release-assistant, button.release-student, "
                                                  "#close-session") == []
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const csrf = document.querySelector('input[name=csrf]').value;
        fetch('/actions/release-assistant', {method: 'POST', redirect: 'manual',
              body: new URLSearchParams({csrf: csrf, session_id: arguments[0], assistant_id: 'alice'})})
          .then(answer => done(answer.status));""", site.session_id)
    assert status == 403
    http = site.logged_in("eve")
    token = csrf_of(http.get(site.url(f"/session?id={site.session_id}"), timeout=10).text)
    refused = http.post(site.url("/actions/close"), data={"csrf": token, "session_id": site.session_id},
                        allow_redirects=False, timeout=10)
    assert refused.status_code == 403 and "read-only role" in refused.text
    with AssignmentClient(settings, timeout_seconds=15) as client:
        stats = client.stats(site.session_id)
    assert stats.session_status == "open" and "alice" in stats.holders


def test_actions_need_the_forms_csrf_token_and_are_logged_with_who_asked(site: Site) -> None:
    http = site.logged_in("boss")
    forged = http.post(site.url("/actions/release-assistant"), data={"session_id": site.session_id,
                                                                     "assistant_id": "alice"},
                       allow_redirects=False, timeout=10)
    assert forged.status_code == 403 and "CSRF" in forged.text
    token = csrf_of(http.get(site.url(f"/session?id={site.session_id}"), timeout=10).text)
    done = http.post(site.url("/actions/release-assistant"), timeout=10,
                     data={"csrf": token, "session_id": site.session_id, "assistant_id": "nobody-at-all"})
    assert done.status_code == 200
    viewer = site.logged_in("eve")
    token = csrf_of(viewer.get(site.url(f"/session?id={site.session_id}"), timeout=10).text)
    assert viewer.post(site.url("/actions/close"), data={"csrf": token, "session_id": site.session_id},
                       allow_redirects=False, timeout=10).status_code == 403
    log = poll(lambda: site.server.process.log_path.read_text(errors="replace"),
               lambda text: "dashboard_refused" in text and "dashboard_action" in text, "the action log")
    assert re.search(r'event="dashboard_action" user="boss" role="admin" action="release_assistant"', log)
    assert re.search(r'event="dashboard_refused" user="eve" role="viewer" action="(close|release-assistant)"', log)
    assert not any(password in log for password in site.passwords.values())
