VERSION = "0.2.0"   # firmware version: Modbus PnP 0x2003, SunSpec Vr, FC 43 revision
