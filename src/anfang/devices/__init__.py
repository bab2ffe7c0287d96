"""Device and channel registry shared by every access protocol (GB/T 28181, GA/T 1400, MQTT): status history,
uptime, operations."""
