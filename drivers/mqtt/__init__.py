"""MQTT 5 link (paho-mqtt 2.x) shared by the terminal and the registry."""

from drivers.mqtt.link import MqttLink, TlsFiles

__all__ = ["MqttLink", "TlsFiles"]
