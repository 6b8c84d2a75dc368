"""A test script's tally of checks: check() records each one and prints a failure at once, so a
run reports every broken check instead of stopping at the first. Shared by tests/convert and
tests/clip."""

failures = []
passed = 0


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)
    return ok
