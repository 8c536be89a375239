//! FORMAT.md's worked example of the delivery layer: the ground's Finished PDU, as cfdp-rs's
//! spacepackets writes it, in its link frame with the MAC, checked byte for byte.

use cfdp_spacepackets::cfdp::pdu::finished::{
    DeliveryCode, FileStatus, FinishedPduCreator, FinishedPduReader,
};
use cfdp_spacepackets::cfdp::pdu::{CommonPduConfig, PduHeader, WritablePduPacket};
use cfdp_spacepackets::cfdp::tlv::EntityIdTlv;
use cfdp_spacepackets::cfdp::{ConditionCode, CrcFlag};
use cfdp_spacepackets::util::{UnsignedByteFieldU16, UnsignedByteFieldU32};
use orbhash_link::delivery::{BOARD_ENTITY, GROUND_ENTITY};
use orbhash_wire::{open_pdu_frame, pdu_mac, MacKey};

/// The hex bytes of the first ```text block after `marker` in the wire crate's FORMAT.md.
fn documented(marker: &str) -> Vec<u8> {
    let format = include_str!("../../FORMAT.md");
    let after = format.split(marker).nth(1).expect("marker present");
    let block = after.split("```text").nth(1).expect("block");
    let block = block.split("```").next().expect("end");
    block
        .lines()
        .flat_map(|line| line.split('|').next().unwrap_or("").split_whitespace())
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
        .collect()
}

fn finished(delivery: DeliveryCode, condition: ConditionCode) -> Vec<u8> {
    let mut config = CommonPduConfig::new_with_byte_fields(
        UnsignedByteFieldU16::new(BOARD_ENTITY),
        UnsignedByteFieldU16::new(GROUND_ENTITY),
        UnsignedByteFieldU32::new(17),
    )
    .expect("config");
    config.crc_flag = CrcFlag::WithCrc;
    let header = PduHeader::new_for_file_directive(config, 0);
    let fault_location = (condition != ConditionCode::NoError)
        .then(|| EntityIdTlv::new(UnsignedByteFieldU16::new(GROUND_ENTITY).into()));
    FinishedPduCreator::new(
        header,
        condition,
        delivery,
        FileStatus::Retained,
        &[],
        fault_location,
    )
    .to_vec()
    .expect("writes")
}

#[test]
fn the_documented_finished_frame_is_what_the_layers_write_and_read() {
    let key = MacKey::new([0x42; 32]);
    let pdu = finished(DeliveryCode::Complete, ConditionCode::NoError);
    let mut frame = pdu.clone();
    frame.extend_from_slice(&pdu_mac(&key, &pdu));
    let hex: Vec<String> = frame.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        documented("<!-- example-finished -->"),
        frame,
        "{}",
        hex.join(" ")
    );
    let opened = open_pdu_frame(&frame, Some(&key)).expect("opens");
    let reader = FinishedPduReader::new(opened).expect("reads");
    assert_eq!(reader.delivery_code(), DeliveryCode::Complete);
    assert_eq!(reader.condition_code(), ConditionCode::NoError);
    // The ground's refusal: a longer data field (the fault location), another status byte.
    let refused = finished(DeliveryCode::Incomplete, ConditionCode::FilestoreRejection);
    let hex: Vec<String> = refused.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        documented("<!-- example-refused -->"),
        refused,
        "{}",
        hex.join(" ")
    );
    let reader = FinishedPduReader::new(&refused).expect("reads");
    assert_eq!(reader.delivery_code(), DeliveryCode::Incomplete);
    assert_eq!(reader.condition_code(), ConditionCode::FilestoreRejection);
}
