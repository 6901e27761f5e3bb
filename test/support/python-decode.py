"""Reads a change topic the way a Kafka user's own Python code would: Confluent's Python client
(confluent-kafka), read_committed, and its AvroDeserializer with a SchemaRegistryClient on the
registry's Confluent-compatible URL (fastavro underneath, not avsc). Every record is decoded,
with the logical-type conversions the deserializer applies (dates, times, timestamps, decimals,
uuids); records split into Chunk parts are also joined and the whole record decoded.

Usage: python python-decode.py BOOTSTRAP REGISTRY_URL TOPIC
Prints one JSON line: {"records": n, "decoded": n, "joined": n, "failures": [...], "schemas": n,
"prefixes": [logical message prefixes seen], "statements": [DDL statements of DdlEvent records, in
topic order per partition]}
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, topic = sys.argv[1:4]
registry = SchemaRegistryClient({"url": registry_url})
deserialize = AvroDeserializer(registry)
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "python-decode",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    }
)
metadata = consumer.list_topics(topic, timeout=30)
partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
ends = {}
for tp in partitions:
    low, high = consumer.get_watermark_offsets(tp, timeout=30)
    if high > low:
        ends[tp.partition] = high
consumer.assign([TopicPartition(topic, p, 0) for p in ends])

records = decoded = joined = 0
prefixes = set()
statements = []
failures = []
schema_ids = set()
parts = {}
positions = {}
while ends:
    msg = consumer.poll(10)
    if msg is None:
        # read_committed stops before aborted or open transactions: the last stable offset
        for p in list(ends):
            (tp,) = consumer.position([TopicPartition(topic, p)])
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if tp.offset >= high or tp.offset < 0:
                del ends[p]
        continue
    if msg.error():
        failures.append({"error": str(msg.error())})
        break
    p, offset = msg.partition(), msg.offset()
    if offset + 1 >= ends.get(p, 0):
        ends.pop(p, None)
    records += 1
    value = msg.value()
    schema_ids.add(int.from_bytes(value[1:5], "big"))
    headers = {k: v.decode() for k, v in (msg.headers() or [])}
    ctx = SerializationContext(topic, MessageField.VALUE)
    try:
        record = deserialize(value, ctx)
        decoded += 1
    except Exception as e:  # noqa: BLE001 - each failure is reported with its record
        failures.append({"offset": offset, "schemaId": int.from_bytes(value[1:5], "big"), "error": f"{type(e).__name__}: {e}"})
        continue
    if isinstance(record, dict) and "prefix" in record:
        prefixes.add(record["prefix"])
    if isinstance(record, dict) and "statement" in record and "tables" in record:
        statements.append(record["statement"])
    chunk = headers.get("brabant.chunk")
    if chunk is not None:
        part, count = (int(x) for x in chunk.split("/"))
        parts.setdefault(p, []).append(record["data"])
        if part + 1 == count:
            whole = b"".join(parts.pop(p))
            try:
                deserialize(whole, ctx)
                joined += 1
            except Exception as e:  # noqa: BLE001
                failures.append({"offset": offset, "joined": True, "error": f"{type(e).__name__}: {e}"})
consumer.close()
print(
    json.dumps(
        {
            "records": records,
            "decoded": decoded,
            "joined": joined,
            "failures": failures,
            "schemas": len(schema_ids),
            "prefixes": sorted(prefixes),
            "statements": statements,
        }
    )
)
