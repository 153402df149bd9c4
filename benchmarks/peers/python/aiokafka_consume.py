"""The Python side of `sluice-lab bench peers`: aiokafka's AIOKafkaConsumer reading every
record of a topic with a fresh group in a getmany loop, doing nothing with them, and committing
(auto commit while reading, a commit at the end).

Usage: python aiokafka_consume.py BROKERS TOPIC GROUP EXPECTED
Prints one JSON object on stdout: records, seconds (first record to last), startup_seconds
(client creation to first record), committed (records the final commit covers) and
peak_rss_bytes (VmHWM of this process).
"""

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


async def consume(brokers: str, topic: str, group: str, expected: int) -> dict:
    created = time.monotonic()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=brokers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        session_timeout_ms=6000,
        max_poll_interval_ms=10000,
        # Tuned for throughput: fetches that fill, large batches.
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=4 << 20,
        check_crcs=False,
    )
    await consumer.start()
    records = 0
    sink = 0
    first = last = None
    idle_since = time.monotonic()
    try:
        while records < expected:
            batches = await consumer.getmany(timeout_ms=100, max_records=10000)
            polled = 0
            for partition_records in batches.values():
                for record in partition_records:
                    sink += record.offset  # no-op handling
                polled += len(partition_records)
            if polled == 0:
                if time.monotonic() - idle_since > 30:
                    raise SystemExit(f"no record for 30 s after {records} records")
                continue
            idle_since = time.monotonic()
            if first is None:
                first = idle_since
            records += polled
            last = time.monotonic()
        await consumer.commit()
        committed = 0
        for partition in consumer.assignment():
            offset = await consumer.committed(partition)
            committed += offset or 0
    finally:
        await consumer.stop()
    return {
        "records": records,
        "seconds": last - first,
        "startup_seconds": first - created,
        "committed": committed,
        "peak_rss_bytes": peak_rss(),
    }


def main() -> None:
    if len(sys.argv) != 5:
        print("usage: aiokafka_consume.py BROKERS TOPIC GROUP EXPECTED", file=sys.stderr)
        raise SystemExit(2)
    brokers, topic, group, expected = sys.argv[1:]
    report = asyncio.run(consume(brokers, topic, group, int(expected)))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
