"""Headless Chromium for the console's browser tests: Debian's ``chromium`` and
``chromium-driver`` (installed here with apt-get when missing, as root), driven by
Selenium with explicit paths so Selenium Manager downloads nothing. With CI=true a browser
that cannot be had fails the tests; elsewhere they are skipped.

Screenshots go to ``BUS_CONSOLE_SCREENSHOTS`` (default: the test's tmp dir); the ones
committed under docs/img/ were made with ``BUS_CONSOLE_SCREENSHOTS=docs/img``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = ["chromium", "chromium-driver"]


def _installed() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def _install() -> str:
    """apt-get install the browser and its driver; what went wrong, if anything."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root on a Debian-like system: install " + " ".join(PACKAGES)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *PACKAGES]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:  # a clean machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
    return "" if done.returncode == 0 else f"apt-get install failed: {done.stderr[-500:]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    if not _installed():
        problem = _install()
        if not _installed():
            message = f"Chromium is not available ({problem or 'not installed'})"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def browser(chromium: str) -> Iterator[object]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("BUS_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where
