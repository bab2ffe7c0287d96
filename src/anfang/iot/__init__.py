"""Access control, perimeter alarms and IoT sensors over MQTT (and HTTP for the same messages)."""
