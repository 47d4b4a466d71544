#!/usr/bin/env bash
# An MQTT device against rocketgate, with Debian's mosquitto clients
# (apt-get install -y mosquitto-clients):
#   - announces itself with a retained "online" status and a will that flips it to "offline"
#     when the device drops off the network;
#   - listens for commands on a persistent session (commands sent while it is offline arrive
#     when it reconnects, even across a broker restart);
#   - publishes telemetry with QoS 1 (acknowledged only once rocketgate stored it).
#
# Usage: ./device.sh [HOST] [PORT] [DEVICE_ID]   (INTERVAL=seconds between readings, 1 by default)
set -euo pipefail
HOST=${1:-127.0.0.1}
PORT=${2:-1883}
ID=${3:-dev-$$}

command -v mosquitto_pub >/dev/null || { echo "install mosquitto-clients first" >&2; exit 1; }

# Status and telemetry run beside the command listener, in the background; they stop early
# when the listener is gone.
(
  # Retained status: every new subscriber of devices/+/status sees it at once.
  mosquitto_pub -h "$HOST" -p "$PORT" -V mqttv5 -t "devices/$ID/status" -m online -q 1 -r

  # Telemetry with a v5 user property (it becomes a RocketMQ message property of topic `devices`).
  for i in $(seq 1 10); do
    kill -0 $$ 2>/dev/null || exit 0
    mosquitto_pub -h "$HOST" -p "$PORT" -V mqttv5 -q 1 -t "devices/$ID/telemetry" \
      -D publish user-property unit celsius \
      -m "{\"seq\":$i,\"temp\":$((20 + RANDOM % 5))}"
    sleep "${INTERVAL:-1}"
  done
  echo "telemetry sent; send a command with:"
  echo "  mosquitto_pub -h $HOST -p $PORT -q 1 -t devices/$ID/cmd -m reboot"
) &

# Commands: persistent session (-c, clean session off), QoS 1, MQTT 5, with the will. The script
# becomes the listener (exec), so the device is this one process: however it is stopped
# (Ctrl-C, kill, kill -9) its connection ends without a clean DISCONNECT, the broker publishes
# the will, and the telemetry loop above stops too.
exec mosquitto_sub -h "$HOST" -p "$PORT" -V mqttv5 -i "$ID" -c -q 1 -x 86400 \
  -t "devices/$ID/cmd" -v \
  --will-topic "devices/$ID/status" --will-payload offline --will-qos 1 --will-retain
