"""The operator console clicked through in headless Chromium, against a live saga system.

Each test waits on what it expects to see (WebDriverWait), never sleeps then asserts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from sagas.effects import task_id
from tests.browser.world import OPERATOR_TOKEN, VIEWER_TOKEN, World

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with World(tmp_path_factory.mktemp("console")) as w:
        yield w


def wait_until(condition: Callable[[], bool], *, timeout_s: float) -> None:
    """Poll ``condition`` (the world's store) until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def _login(browser: Any, world: World, token: str, path: str = "/sagas") -> None:
    browser.get(f"{world.url}{path}")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login").click()
    _until(browser, lambda b: b.find_elements(By.ID, "who"))


def _until(browser: Any, condition: Callable[[Any], Any], timeout_s: float = 20) -> Any:
    # the live region is replaced every few seconds: an element read as it goes is stale
    ignored = (StaleElementReferenceException, NoSuchElementException)
    wait = WebDriverWait(browser, timeout_s, poll_frequency=0.1, ignored_exceptions=ignored)
    return wait.until(condition)


def _text(browser: Any, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def _status_is(world: World, saga_id: str, status: str) -> Callable[[], bool]:
    return lambda: world.status(saga_id) == status


def _confirm(browser: Any, reason: str) -> None:
    _until(browser, lambda b: b.find_elements(By.ID, "why"))
    browser.find_element(By.ID, "why").send_keys(reason)
    browser.find_element(By.ID, "confirm").click()


def _reload_until_text(browser: Any, element_id: str, text: str) -> None:
    def seen(b: Any) -> bool:
        b.refresh()
        found = b.find_elements(By.ID, element_id)
        return bool(found) and text in found[0].text

    _until(browser, seen)


def test_the_sagas_list_links_to_a_saga_page_with_diagram_and_timeline(
    browser: Any, world: World, screenshots: Path
) -> None:
    saga_id = world.place("o-1")
    wait_until(_status_is(world, saga_id, "completed"), timeout_s=20)
    _login(browser, world, OPERATOR_TOKEN)
    _reload_until_text(browser, "saga-rows", saga_id)
    browser.save_screenshot(str(screenshots / "console-sagas.png"))
    browser.find_element(By.LINK_TEXT, saga_id).click()
    _until(browser, lambda b: b.find_elements(By.ID, "timeline"))
    _until(browser, lambda b: _text(b, "status") == "completed")
    drawn = browser.find_element(By.CSS_SELECTOR, "#diagram svg g.end.current")
    assert drawn.text == "completed"
    charged = browser.find_element(By.ID, "step-charge_card")
    assert "status-completed" in str(charged.get_attribute("class"))
    browser.find_element(By.ID, "mermaid-toggle").click()  # the source is folded away
    assert "stateDiagram-v2" in _text(browser, "mermaid")
    assert "class completed current" in _text(browser, "mermaid")
    assert "charge_card" in _text(browser, "steps")
    browser.save_screenshot(str(screenshots / "console-saga.png"))
    browser.find_element(By.ID, "trace-link").click()
    _until(browser, lambda b: "console.card.charged.v1" in _text(b, "trace"))
    assert "console.stock.reserve.v1" in _text(browser, "trace")


def test_retry_of_a_saga_that_needs_attention_lets_it_finish(
    browser: Any, world: World, screenshots: Path
) -> None:
    world.shop.declines.add("o-2")
    world.shop.release_broken = True
    saga_id = world.place("o-2")
    wait_until(_status_is(world, saga_id, "needs_attention"), timeout_s=20)
    world.shop.release_broken = False  # the stock service was fixed
    _login(browser, world, OPERATOR_TOKEN, f"/sagas/{saga_id}")
    browser.save_screenshot(str(screenshots / "console-needs-attention.png"))
    browser.find_element(By.ID, "retry").click()
    _confirm(browser, "stock service fixed")
    _until(browser, lambda b: "compensated" in _text(b, "status"))
    assert world.status(saga_id) == "compensated"
    assert "alice (operator)" in _text(browser, "audit")
    assert "stock service fixed" in _text(browser, "audit")


def test_approving_a_waiting_step_publishes_the_awaited_event(
    browser: Any, world: World, screenshots: Path
) -> None:
    saga_id = world.place("o-3", needs_approval=True)

    def waiting() -> bool:
        stored = world.call(world.store.load(saga_id))
        return stored is not None and stored.state.steps["approval"].status.value == "running"

    wait_until(waiting, timeout_s=20)
    _login(browser, world, OPERATOR_TOKEN, f"/sagas/{saga_id}")
    browser.save_screenshot(str(screenshots / "console-waiting.png"))
    browser.find_element(By.ID, "approve-approval").click()
    _confirm(browser, "approved on the phone with the customer")
    _until(browser, lambda b: "completed" in _text(b, "status"))
    assert world.status(saga_id) == "completed"
    assert "approve" in _text(browser, "audit")


def test_a_dead_letter_is_replayed_after_a_dry_run(
    browser: Any, world: World, screenshots: Path
) -> None:
    world.poison("p-1")
    _login(browser, world, OPERATOR_TOKEN, "/dlq")
    _reload_until_text(browser, "letters", "poison-p-1")
    browser.save_screenshot(str(screenshots / "console-dead-letters.png"))
    browser.find_element(By.LINK_TEXT, "poison-p-1").click()
    _until(browser, lambda b: b.find_elements(By.ID, "payload"))
    assert '{"order_id": 42' in _text(browser, "payload")
    browser.save_screenshot(str(screenshots / "console-dead-letter.png"))
    browser.find_element(By.ID, "replay").click()
    _until(browser, lambda b: b.find_elements(By.ID, "plan-summary"))
    assert _text(browser, "plan-summary").startswith("1 to send, 0 refused")
    browser.save_screenshot(str(screenshots / "console-replay-dry-run.png"))
    _confirm(browser, "replaying after the fix")
    _until(browser, lambda b: b.find_elements(By.ID, "sent"))
    assert _text(browser, "sent").startswith("1 sent")


def test_the_catalog_shows_types_producers_consumers_and_live_lag(
    browser: Any, world: World, screenshots: Path
) -> None:
    _login(browser, world, VIEWER_TOKEN, "/catalog")
    catalog = _text(browser, "catalog")
    assert "console.stock.reserve.v1" in catalog
    assert "saga console_order" in catalog
    assert "console-shop.reserve" in catalog
    _until(browser, lambda b: b.find_elements(By.ID, "lag-table"))
    lag = _text(browser, "lag-table")
    assert "console-shop" in lag
    assert "sagas console.replies" in lag
    browser.save_screenshot(str(screenshots / "console-catalog.png"))


def test_a_viewer_sees_no_actions_and_is_refused_one(
    browser: Any, world: World, screenshots: Path
) -> None:
    saga_id = world.place("o-4", needs_approval=True)
    wait_until(lambda: world.status(saga_id) == "running", timeout_s=20)
    _login(browser, world, VIEWER_TOKEN, f"/sagas/{saga_id}")
    assert not browser.find_elements(By.ID, "cancel")
    # the form an operator would get, posted with the viewer's own session and CSRF token
    browser.execute_script(
        """const f = document.createElement('form'); f.method = 'post';
        f.action = arguments[0];
        const c = document.createElement('input'); c.name = 'csrf';
        c.value = document.querySelector('input[name=csrf]').value; f.appendChild(c);
        document.body.appendChild(f); f.submit();""",
        f"/sagas/{saga_id}/cancel",
    )
    _until(browser, lambda b: "only an operator may act" in b.page_source)
    assert world.status(saga_id) == "running"
    browser.save_screenshot(str(screenshots / "console-viewer-refused.png"))


def test_a_human_task_completed_through_its_form_lets_the_saga_go_on(
    browser: Any, world: World, screenshots: Path
) -> None:
    saga_id = world.order_gift("g-1")
    task = task_id(saga_id, "choose_gift")
    wait_until(lambda: world.task(task) is not None, timeout_s=20)
    _login(browser, world, OPERATOR_TOKEN, "/tasks?assignee=santa%40example.com")
    assert "choose_gift" in _text(browser, "task-rows")
    browser.save_screenshot(str(screenshots / "console-tasks.png"))
    browser.find_element(By.LINK_TEXT, saga_id).click()
    _until(browser, lambda b: b.find_elements(By.ID, "saga-tasks"))
    browser.find_element(By.ID, "task-choose_gift").click()  # the saga page lists its task
    _until(browser, lambda b: b.find_elements(By.ID, "task-form"))
    assert "santa@example.com" in _text(browser, "task-facts")
    browser.find_element(By.ID, "field-gift").send_keys("teddy bear")
    Select(browser.find_element(By.ID, "field-wrapping")).select_by_visible_text("festive")
    browser.execute_script(
        "document.getElementById('field-deliver_on').value = '2026-12-24'"
    )  # a date input's typing order depends on the browser's locale
    browser.find_element(By.ID, "field-card").click()
    browser.find_element(By.ID, "note").send_keys("chosen with the customer")
    browser.find_element(By.ID, "complete-task").click()  # no quantity yet
    _until(browser, lambda b: b.find_elements(By.ID, "error-quantity"))
    assert _text(browser, "error-quantity") == "Field required"
    assert world.task(task).status == "open"  # type: ignore[union-attr]
    browser.save_screenshot(str(screenshots / "console-task.png"))
    # what was entered is kept: only the quantity is missing
    assert browser.find_element(By.ID, "field-card").is_selected()
    browser.find_element(By.ID, "field-quantity").send_keys("2")
    browser.find_element(By.ID, "complete-task").click()
    _until(browser, lambda b: b.find_elements(By.ID, "done"))
    wait_until(_status_is(world, saga_id, "completed"), timeout_s=20)
    assert world.data(saga_id)["gift"] == "2 x teddy bear (festive)"
    row = world.task(task)
    assert row is not None
    assert (row.status, row.completed_by) == ("completed", "alice")
    assert row.data is not None
    assert (row.data["deliver_on"], row.data["card"]) == (
        "2026-12-24",
        True,
    )
    browser.find_element(By.ID, "saga-link").click()
    _until(browser, lambda b: "complete_task" in _text(b, "audit"))
