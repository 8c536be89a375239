//! FORMAT.md's worked example, checked byte for byte in both directions.

mod common;

use orbhash_wire::packet::MAX_PACKET_LEN;
use orbhash_wire::{
    decode_packet, encode_frame, encode_packet, Code, ModelId, PacketContext, Record, TileGrid,
    TilePosition, MAX_FRAME_LEN,
};

fn example() -> (PacketContext, Vec<Record>) {
    let context = PacketContext {
        apid: 0x042,
        model_id: ModelId([0x5a, 0x11, 0x7e, 0x00, 0x42, 0x99, 0x00, 0x01]),
        code_bits: 16,
        label_set: 2,
        epoch: 3,
        grid: TileGrid {
            tiles_per_row: 40,
            tile_size_px: 256,
            stride_px: 256,
        },
    };
    let record = |tile_id: u32, capture_time_ms: u64, label, confidence, code: [u8; 2]| {
        let (row_px, col_px) = context.grid.predict(tile_id);
        Record {
            tile_id,
            capture_time_ms,
            position: TilePosition {
                scene_id: 17,
                row_px,
                col_px,
                map: None,
            },
            label,
            confidence,
            code: Code::from_bytes(16, &code).expect("16 bits"),
        }
    };
    let records = vec![
        record(80, 1_700_000_000_000, 4, 230, [0xb1, 0x6e]),
        record(81, 1_700_000_000_000, 4, 200, [0x00, 0x7f]),
        record(85, 1_700_000_000_040, 1, 99, [0xff, 0x01]),
    ];
    (context, records)
}

/// The hex bytes of the first ```text block after `marker` in FORMAT.md.
fn documented(marker: &str) -> Vec<u8> {
    let format = include_str!("../FORMAT.md");
    let after = format.split(marker).nth(1).expect("marker present");
    let block = after
        .split("```text")
        .nth(1)
        .expect("block")
        .split("```")
        .next()
        .expect("end");
    block
        .lines()
        // Bytes come first on a line; a `|` starts the annotation.
        .flat_map(|line| line.split('|').next().unwrap_or("").split_whitespace())
        .filter(|word| *word != "EXAMPLE_PACKET" && *word != "EXAMPLE_FRAME")
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn worked_example_matches_format_md() {
    let (context, records) = example();
    let mut packet = [0u8; MAX_PACKET_LEN];
    let len = encode_packet(&context, 5, &records, None, &mut packet).expect("fits");
    let packet = &packet[..len];
    assert_eq!(
        hex(packet),
        hex(&documented("<!-- example-packet -->")),
        "packet"
    );

    let mut frame = [0u8; MAX_FRAME_LEN];
    let frame_len = encode_frame(packet, &mut frame).expect("fits");
    assert_eq!(
        hex(&frame[..frame_len]),
        hex(&documented("<!-- example-frame -->")),
        "frame"
    );

    let documented_packet = documented("<!-- example-packet -->");
    let view = decode_packet(&documented_packet, None).expect("decodes");
    assert_eq!(view.records().collect::<Vec<_>>(), records);
}

/// FORMAT.md's telecommand: a tile request under the key of 32 bytes 0x42.
fn command_example() -> Vec<u8> {
    use orbhash_wire::{
        encode_command, Command, CommandHeader, MacKey, StreamPosition, TileList, TileRef,
    };
    let header = CommandHeader {
        apid: 0x042,
        sequence_count: 9,
        source: 7,
        position: StreamPosition {
            epoch: 1,
            counter: 300,
        },
    };
    let tiles = [
        TileRef {
            scene: 17,
            tile: 81,
        },
        TileRef {
            scene: 17,
            tile: 300,
        },
    ];
    let command = Command::RequestTiles {
        request: 12,
        tiles: TileList::Slice(&tiles),
    };
    let mut out = [0u8; 256];
    let len = encode_command(&header, &command, &MacKey::new([0x42; 32]), &mut out).expect("fits");
    out[..len].to_vec()
}

#[test]
fn worked_command_matches_format_md() {
    let command = command_example();
    assert_eq!(
        hex(&command),
        hex(&documented("<!-- example-command -->")),
        "command"
    );
    let documented_command = documented("<!-- example-command -->");
    let (header, read) =
        orbhash_wire::decode_command(&documented_command, &orbhash_wire::MacKey::new([0x42; 32]))
            .expect("decodes");
    assert_eq!(header.position.counter, 300);
    assert_eq!(read.name(), "request-tiles");
}

/// FORMAT.md's board report: the tile request above carried out, reported at the board's clock
/// 2026-12-03 00:00:00 UTC.
fn report_example() -> Vec<u8> {
    use orbhash_wire::{encode_report, Report, ReportHeader, RequestId, StreamPosition};
    let header = ReportHeader {
        apid: 0x042,
        sequence_count: 3,
        message_counter: 3,
        time_unix_ms: 1_796_256_000_000,
    };
    let report = Report::Executed {
        request: RequestId {
            packet_id: 0x1842,
            sequence_control: 0xc009,
        },
        position: StreamPosition {
            epoch: 1,
            counter: 300,
        },
    };
    let mut out = [0u8; orbhash_wire::MAX_REPORT_LEN];
    let len = encode_report(&header, &report, &mut out).expect("fits");
    out[..len].to_vec()
}

#[test]
fn worked_report_matches_format_md() {
    let report = report_example();
    assert_eq!(
        hex(&report),
        hex(&documented("<!-- example-report -->")),
        "report"
    );
    let (_, decoded, len) = orbhash_wire::decode_report(&report).expect("decodes");
    assert_eq!(len, report.len());
    assert!(matches!(decoded, orbhash_wire::Report::Executed { .. }));
    // The request id is the documented telecommand's own first four bytes.
    assert_eq!(report[21..25], command_example()[..4]);
}
