"""Add up test reports and print one closing line: 'N passed, N failed, N skipped'.

Reads JUnit XML (pytest, Playwright) and Jest's ``--json`` output.
"""

import json
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1]
    if path.endswith(".json"):
        report = json.load(open(path))
        p, f, s = report["numPassedTests"], report["numFailedTests"], report["numPendingTests"]
    else:
        p = f = s = 0
        for suite in ET.parse(path).getroot().iter("testsuite"):
            fail = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            p += int(suite.get("tests", 0)) - fail - skip
            f += fail
            s += skip
    passed, failed, skipped = passed + p, failed + f, skipped + s
    print(f"  {name}: {p} passed, {f} failed, {s} skipped")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or not passed else 0)
