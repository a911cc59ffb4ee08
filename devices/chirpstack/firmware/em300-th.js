// Milesight EM300-TH (LoRaWAN temperature and humidity sensor): uplink codec for
// ChirpStack v4 (device profile -> Codec -> JavaScript functions) and The Things Stack
// (payload formatter -> Custom Javascript formatter). One file serves both: each calls
// decodeUplink(input) with input.bytes (array of 0..255) and input.fPort, and reads
// { data, warnings, errors } from the result.
//
// Output fields, as devices/lorawan.py reads them:
//   battery      %               channel 01 75, uint8
//   temperature  degC            channel 03 67, int16 little-endian / 10
//   humidity     %RH             channel 04 68, uint8 / 2 (0.5 % steps)
//   history      [{timestamp, temperature, humidity}]  channel 20 CE (stored records
//                re-sent after a network outage; coldchain does not ingest them)
//
// Byte layout: Milesight's payload definition for the EM300-TH (the README and decoder of
// github.com/Milesight-IoT/SensorDecoders, EM_Series/EM300_Series/EM300-TH) and the
// project's device research (domain.md, section A.4). The payload is a sequence of
// channels: channel id (1 byte), channel type (1 byte), value (type-dependent length):
//
//   01 75 bb                 battery            bb = percent
//   03 67 tt tt              temperature        int16 LE, 0.1 degC (1E 00 = 3.0; 3D FF = -19.5)
//   04 68 hh                 humidity           hh / 2 %RH (B4 = 90.0)
//   20 CE ss ss ss ss tt tt hh rr   history     unix time uint32 LE, temperature int16 LE
//                                               / 10, humidity / 2, 1 reserved byte
//   FF xx ...                device information (sent after power-on / on request):
//                            01 ipso version (1), 09 hardware version (2), 0A firmware
//                            version (2), 0B power-on (1), 0F LoRaWAN class (1),
//                            16 serial number (8), FE reset (1), FF TSL version (2)
//
// Example: 01755C 03671E00 0468B4 -> {"battery":92,"temperature":3.0,"humidity":90.0}
//
// Written from the byte layout above (not copied from the vendor's decoder), in ES5 so
// that both ChirpStack's QuickJS and TTS's JavaScript engine run it. An unknown channel
// stops decoding with a warning (its length is unknown, so nothing after it can be
// trusted); a channel cut short is an error, so the network server stores no object.

// FF-channel (device information) lengths, by channel type.
var EM300_INFO_LENGTHS = {
  0x01: 1, 0x09: 2, 0x0a: 2, 0x0b: 1, 0x0f: 1, 0x16: 8, 0xfe: 1, 0xff: 2
};

function em300Hex(value) {
  return (value < 16 ? "0" : "") + value.toString(16).toUpperCase();
}

function em300Int16LE(bytes, i) {
  var value = bytes[i] | (bytes[i + 1] << 8);
  return value > 0x7fff ? value - 0x10000 : value;
}

function em300UInt32LE(bytes, i) {
  return (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16)) + bytes[i + 3] * 0x1000000;
}

function decodeUplink(input) {
  var bytes = input.bytes || [];
  var data = {};
  var warnings = [];
  var i = 0;
  while (i < bytes.length) {
    if (i + 2 > bytes.length) {
      return { data: {}, warnings: warnings, errors: ["truncated channel header at byte " + i] };
    }
    var id = bytes[i];
    var type = bytes[i + 1];
    var size;
    if (id === 0x01 && type === 0x75) {
      size = 1;
    } else if (id === 0x03 && type === 0x67) {
      size = 2;
    } else if (id === 0x04 && type === 0x68) {
      size = 1;
    } else if (id === 0x20 && type === 0xce) {
      size = 8;
    } else if (id === 0xff && EM300_INFO_LENGTHS.hasOwnProperty(type)) {
      size = EM300_INFO_LENGTHS[type];
    } else {
      warnings.push("unknown channel " + em300Hex(id) + " " + em300Hex(type) + " at byte " + i +
        ": the rest of the payload is ignored");
      break;
    }
    var at = i + 2;
    if (at + size > bytes.length) {
      return {
        data: {},
        warnings: warnings,
        errors: ["channel " + em300Hex(id) + " " + em300Hex(type) + " cut short at byte " + i]
      };
    }
    if (id === 0x01) {
      data.battery = bytes[at];
    } else if (id === 0x03) {
      data.temperature = em300Int16LE(bytes, at) / 10;
    } else if (id === 0x04) {
      data.humidity = bytes[at] / 2;
    } else if (id === 0x20) {
      if (!data.history) {
        data.history = [];
      }
      data.history.push({
        timestamp: em300UInt32LE(bytes, at),
        temperature: em300Int16LE(bytes, at + 4) / 10,
        humidity: bytes[at + 6] / 2
      });
    }
    i = at + size;
  }
  return { data: data, warnings: warnings, errors: [] };
}
