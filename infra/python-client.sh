#!/usr/bin/env bash
# Installs Confluent's Python client (confluent-kafka with fastavro, from PyPI) into a virtual
# environment under .cache/python-client, for the tests that read the change topics the way a
# Kafka user's own code would (not through avsc). Safe to run again; does nothing when the
# environment already holds the pinned versions. Prints the environment's python on success.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so a test result does not change with a new release; raise them on purpose.
CONFLUENT_KAFKA=2.6.1
FASTAVRO=1.9.7
REQUESTS=2.32.3
ATTRS=24.2.0
CACHETOOLS=5.5.0
HTTPX=0.27.2
AUTHLIB=1.3.2

venv=.cache/python-client
py=$venv/bin/python
say() { printf '[python-client] %s\n' "$*" >&2; }

if ! command -v python3 >/dev/null; then
  say "python3 is missing: install Debian's python3 and python3-venv"; exit 1
fi
want="confluent-kafka==$CONFLUENT_KAFKA fastavro==$FASTAVRO"
if [ -x "$py" ] && "$py" - "$CONFLUENT_KAFKA" "$FASTAVRO" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if (version('confluent-kafka'), version('fastavro')) == tuple(sys.argv[1:3]) else 1)
PY
  echo "$py"; exit 0
fi
say "creating $venv with $want"
rm -rf "$venv"
python3 -m venv "$venv"
"$py" -m pip install --quiet --disable-pip-version-check \
  "confluent-kafka==$CONFLUENT_KAFKA" "fastavro==$FASTAVRO" "requests==$REQUESTS" \
  "attrs==$ATTRS" "cachetools==$CACHETOOLS" "httpx==$HTTPX" "authlib==$AUTHLIB" >&2
# The Schema Registry client and AvroDeserializer must import: that is what the tests use.
"$py" -c 'from confluent_kafka.schema_registry import SchemaRegistryClient; from confluent_kafka.schema_registry.avro import AvroDeserializer' >&2
echo "$py"
