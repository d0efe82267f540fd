"""Browser tests: the console in headless Chromium (Debian's chromium and chromium-driver, through selenium)."""
