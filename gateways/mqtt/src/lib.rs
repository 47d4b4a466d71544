//! rocketgate-gateway-mqtt: MQTT 3.1.1 and 5.0 over TCP and WebSocket on the core `Broker`.
//!
//! Will own (MQTT issue): the MQTT session state machine (QoS 0/1/2 with PUBACK/PUBREC only after
//! the core accepted the message), topic mapping, retained messages, wills and shared
//! subscriptions, all persisted through the core. Depends on `rocketgate-core`, never on another
//! gateway. Not implemented yet.
