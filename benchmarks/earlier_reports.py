"""The plan of the earlier-reports query (a packet to the NCA or NCMEC names its subject's other
reports to either) on 1,000,000 cases: EXPLAIN ANALYZE in a private database, then dropped.

`deploy/local/with-infra.sh .venv/bin/python -m benchmarks.earlier_reports`
"""

import asyncio
from datetime import UTC, datetime

import asyncpg

from benchmarks.api import FILL, plain_dsn
from tests.infra import create_database, drop_database

CASES = 1_000_000
STATUTORY = """
UPDATE cases SET destination = 'nca', destination_key = 'nca' WHERE right(case_key, 1) = '3';
UPDATE cases SET mechanism = 'ncmec_cybertipline'
WHERE destination = 'intl' AND right(case_key, 1) IN ('1', '5');
INSERT INTO delivery_receipts
SELECT md5('receipt' || case_id)::uuid, case_id, 1, 'json', repeat('0', 64), 10,
       destination_key, created_at, 'investigator:bench', 'REF-1'
FROM cases
WHERE status IN ('submitted', 'acknowledged', 'closed')
  AND (destination = 'nca' OR mechanism = 'ncmec_cybertipline');
ANALYZE;
"""
# As `services.referral.store._earlier_reports` asks it.
QUERY = """
EXPLAIN (ANALYZE, COSTS OFF)
SELECT delivery_receipts.*, cases.destination FROM delivery_receipts
JOIN cases ON cases.case_id = delivery_receipts.case_id
WHERE cases.org_id = 'org-bench' AND cases.subject_account_id = $1 AND cases.case_id != $2
  AND cases.redacted_at IS NULL AND (destination = 'nca' OR mechanism = 'ncmec_cybertipline')
ORDER BY delivery_receipts.sent_at DESC, delivery_receipts.receipt_id LIMIT 32
"""


async def main() -> None:
    url = await create_database()
    try:
        connection = await asyncpg.connect(plain_dsn(url))
        try:
            await connection.execute(FILL, CASES, datetime.now(UTC))
            await connection.execute(STATUTORY)
            receipts = await connection.fetchval("SELECT count(*) FROM delivery_receipts")
            print(f"{CASES} cases, {receipts} receipts")
            case = await connection.fetchval(
                "SELECT case_id FROM cases WHERE case_key = 'bench|13'"
            )
            for row in await connection.fetch(QUERY, "account-13", case):
                print(row[0])
        finally:
            await connection.close()
    finally:
        await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
