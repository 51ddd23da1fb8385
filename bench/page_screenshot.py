"""The serving page with the embedded model, typed into and answered in headless Chromium; saved as a PNG for the
README (bench/results/serve_page.png). Needs Debian's chromium and chromium-driver, and selenium."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import albert
from albert.serving.launch import ServeSettings, build_app, running


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--text", default="The whale swam through the [MASK] sea.")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve_page.png"))
    a = p.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    pipe = albert.pipeline("fill-mask", precision="fp32")
    app, batcher = build_app(pipe, "fill-mask", ServeSettings(), info={"model": "albert-small-en", "device": "cpu",
                                                                       "precision": "fp32"})
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=820,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        with running(app) as url:
            driver.get(url + "/")
            box = WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.ID, "field-text")))
            box.clear()
            box.send_keys(a.text)
            driver.find_element(By.ID, "submit").click()
            WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.ID, "latency")))
            driver.save_screenshot(a.out)
    finally:
        driver.quit()
        batcher.close()
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
