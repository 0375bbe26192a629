//! Kafka sources against a real Kafka-protocol broker: `tansu` (see README ›
//! Development), started by each test on a free port with in-memory storage.
