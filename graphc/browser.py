"""A headless Chromium, driven by Selenium, to check explorer pages and photograph them.

    with headless_chromium() as driver:
        driver.get("file:///.../page.html")
        errors = console_errors(driver)

It uses Debian's `chromium` and `chromium-driver` (apt-get install chromium
chromium-driver) and the `selenium` package (pip install -e ".[browser]"); it never
downloads a browser or a driver. The flags keep it off the network and off the GPU.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

from graphc.errors import GraphcError

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


class BrowserUnavailable(GraphcError, RuntimeError):
    """Chromium, its driver or Selenium is not installed."""


def missing() -> str | None:
    """What is not installed, in words (None when everything is)."""
    if shutil.which("chromium") is None:
        return "Chromium is not installed (apt-get install chromium)"
    if shutil.which("chromedriver") is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e \".[browser]\")"
    return None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 900):
    """A Selenium Chrome driver for headless Chromium whose page console is logged."""
    problem = missing()
    if problem:
        raise BrowserUnavailable(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in FLAGS + (f"--window-size={width},{height}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list:
    """The page's console errors and uncaught exceptions so far."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]
