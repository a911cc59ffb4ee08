// Dragino LHT65N (LoRaWAN temperature and humidity sensor, built-in SHT20-class sensor
// plus an external probe jack): uplink codec for ChirpStack v4 (device profile -> Codec
// -> JavaScript functions) and The Things Stack (payload formatter -> Custom Javascript
// formatter). One file serves both: each calls decodeUplink(input) with input.bytes
// (array of 0..255) and input.fPort, and reads { data, warnings, errors } from the result.
//
// Output fields, as devices/lorawan.py reads them (numbers, not toFixed() strings):
//   BatV        battery voltage, V       (coldchain maps 2.45 V .. 3.0 V to 0 .. 100 %)
//   TempC_SHT   built-in sensor, degC
//   Hum_SHT     built-in sensor, %RH
//   TempC_DS    external DS18B20 probe (E3 option), degC; 327.67 when no probe answers
//   plus Bat_status (0 ultra low .. 3 good), Ext_sensor (text), Systimestamp, Datalog.
//
// Byte layout: the LHT65N user manual (wiki.dragino.com, "LHT65N LoRaWAN Temperature &
// Humidity Sensor Manual", section 2.4 "Uplink Payload"; the LHT65 manual's section
// 2.4.7 "Ext=1, E1 Temperature Sensor"), Dragino's reference decoders
// (github.com/dragino/dragino-end-node-decoder, LHT65N/) and the project's device
// research (domain.md, section A.4). Big-endian throughout. Normal uplink, fPort 2,
// 11 bytes (7 when no external sensor is configured):
//
//   0-1   BAT        bits 15-14 battery status, bits 13-0 battery voltage in mV
//                    (CB EA -> status 3, 0x0BEA = 3050 mV = 3.05 V)
//   2-3   TempC_SHT  int16 / 100              (01 2E = 3.02; F8 DF = -18.25)
//   4-5   Hum_SHT    (uint16 & 0x0FFF) / 10   (03 7F = 89.5)
//   6     Ext        bits 3-0 external sensor type: 0 none, 1 DS18B20 temperature probe,
//                    2 TMP117 probe, 9 DS18B20 with timestamp (then bytes 0-1 carry the
//                    probe temperature instead of the battery and bytes 7-10 a unix
//                    time), other values are other accessories (not decoded here).
//                    bit 6 set: a poll reply with stored (datalog) records;
//                    bit 7 set: re-sent stored records (retransmission after an outage).
//   7-10  Ext value  type 1/2: bytes 7-8 int16 / 100 (01 13 = 2.75), bytes 9-10 unused;
//                    a DS18B20 that does not answer reads 7F FF = 327.67.
//
// Stored records (bits 6/7 of byte 6) are 11-byte groups: probe value (2), TempC_SHT
// (2), Hum_SHT (2), Ext (1), unix time uint32 (4). They are old readings, so they are
// returned under Datalog only, never as the current TempC_*/Hum_SHT fields (Dragino's
// decoders do the same: a frame with bit 6 or 7 set never yields the live fields).
// fPort 5 is the device-status uplink (model, firmware, band, battery).
//
// Written from the byte layout above (not copied from a vendor decoder), in ES5 so that
// both ChirpStack's QuickJS and TTS's JavaScript engine run it.

function lhtHex(value) {
  return (value < 16 ? "0" : "") + value.toString(16).toUpperCase();
}

function lhtInt16(bytes, i) {
  var value = (bytes[i] << 8) | bytes[i + 1];
  return value > 0x7fff ? value - 0x10000 : value;
}

function lhtUInt16(bytes, i) {
  return (bytes[i] << 8) | bytes[i + 1];
}

function lhtUInt32(bytes, i) {
  return bytes[i] * 0x1000000 + ((bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]);
}

function lhtProbe(type, bytes, i, out) {
  // The external probe's value at bytes[i..i+1], for the probe types that carry one.
  if (type === 1 || type === 9) {
    out.TempC_DS = lhtInt16(bytes, i) / 100;
  } else if (type === 2 || type === 10) {
    out.TempC_TMP117 = lhtInt16(bytes, i) / 100;
  }
}

function lhtRecords(bytes, warnings) {
  var records = [];
  for (var i = 0; i + 11 <= bytes.length; i += 11) {
    var record = {
      time: new Date(lhtUInt32(bytes, i + 7) * 1000).toISOString(),
      TempC_SHT: lhtInt16(bytes, i + 2) / 100,
      Hum_SHT: (lhtUInt16(bytes, i + 4) & 0x0fff) / 10
    };
    lhtProbe(bytes[i + 6] & 0x0f, bytes, i, record);
    records.push(record);
  }
  if (bytes.length % 11 !== 0) {
    warnings.push("datalog of " + bytes.length + " bytes is not a multiple of 11; the tail is ignored");
  }
  return records;
}

var LHT_BANDS = {
  1: "EU868", 2: "US915", 3: "IN865", 4: "AU915", 5: "KZ865", 6: "RU864", 7: "AS923",
  8: "AS923_1", 9: "AS923_2", 10: "AS923_3", 11: "CN470", 12: "EU433", 13: "KR920",
  14: "MA869"
};

function lhtStatus(bytes) {
  return {
    SENSOR_MODEL: bytes[0] === 0x0b ? "LHT65N" : "model 0x" + lhtHex(bytes[0]),
    FIRMWARE_VERSION: (bytes[1] & 0x0f) + "." + ((bytes[2] >> 4) & 0x0f) + "." + (bytes[2] & 0x0f),
    FREQUENCY_BAND: LHT_BANDS[bytes[3]] || "band 0x" + lhtHex(bytes[3]),
    SUB_BAND: bytes[4] === 0xff ? null : bytes[4],
    BAT: lhtUInt16(bytes, 5) / 1000
  };
}

function decodeUplink(input) {
  var bytes = input.bytes || [];
  var warnings = [];
  if (input.fPort === 5) {
    if (bytes.length < 7) {
      return { data: {}, warnings: warnings, errors: ["device status uplink shorter than 7 bytes"] };
    }
    return { data: lhtStatus(bytes), warnings: warnings, errors: [] };
  }
  if (input.fPort !== 2) {
    warnings.push("fPort " + input.fPort + " is not decoded (2 = sensor data, 5 = device status)");
    return { data: {}, warnings: warnings, errors: [] };
  }
  if (bytes.length < 7) {
    return { data: {}, warnings: warnings, errors: ["sensor uplink shorter than 7 bytes"] };
  }
  var ext = bytes[6];
  var type = ext & 0x0f;
  if (ext & 0xc0) {
    warnings.push((ext & 0x40 ? "poll reply" : "retransmission") +
      ": stored readings, returned under Datalog only");
    return { data: { Datalog: lhtRecords(bytes, warnings) }, warnings: warnings, errors: [] };
  }
  var data = {};
  if (type === 9 || type === 10) {
    lhtProbe(type, bytes, 0, data);
    data.Bat_status = bytes[4] >> 6;
  } else {
    data.BatV = (lhtUInt16(bytes, 0) & 0x3fff) / 1000;
    data.Bat_status = bytes[0] >> 6;
  }
  data.TempC_SHT = lhtInt16(bytes, 2) / 100;
  data.Hum_SHT = (lhtUInt16(bytes, 4) & 0x0fff) / 10;
  if (type === 0) {
    data.Ext_sensor = "No external sensor";
  } else if (type === 1 || type === 2) {
    data.Ext_sensor = "Temperature Sensor";
    if (bytes.length >= 9) {
      lhtProbe(type, bytes, 7, data);
      if (data.TempC_DS === 327.67 || data.TempC_TMP117 === 327.67) {
        warnings.push("external probe configured but not answering (7F FF = 327.67)");
      }
    } else {
      warnings.push("external probe value missing (" + bytes.length + " bytes)");
    }
  } else if (type === 9 || type === 10) {
    data.Ext_sensor = "Temperature Sensor";
    if (bytes.length >= 11) {
      data.Systimestamp = lhtUInt32(bytes, 7);
    }
  } else {
    data.Ext_sensor = "type " + type;
    warnings.push("external sensor type " + type + " is not decoded");
  }
  return { data: data, warnings: warnings, errors: [] };
}
