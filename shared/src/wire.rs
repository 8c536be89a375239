//! Cursor-style byte writer and reader over slices.
//!
//! Every variable-length integer goes through postcard, so the format has one varint rule:
//! unsigned LEB128 (7 bits per byte, low group first, high bit = more follows), and zigzag before
//! LEB128 for signed values. Both sides bound-check every access: a short buffer is an error,
//! never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The buffer ended before the value did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn put_u8(&mut self, byte: u8) -> Result<(), Full> {
        self.put_bytes(&[byte])
    }

    pub(crate) fn put_bytes(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let end = self.len.checked_add(bytes.len()).ok_or(Full)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(Full)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    pub(crate) fn put_varint<T: Serialize>(&mut self, value: &T) -> Result<(), Full> {
        let rest = self.buf.get_mut(self.len..).ok_or(Full)?;
        let used = postcard::to_slice(value, rest).map_err(|_| Full)?.len();
        self.len = self.len.checked_add(used).ok_or(Full)?;
        Ok(())
    }
}

/// Why a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    UnexpectedEnd,
    BadVarint,
}

#[derive(Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ReadError> {
        let (first, rest) = self.rest.split_first().ok_or(ReadError::UnexpectedEnd)?;
        self.rest = rest;
        Ok(*first)
    }

    pub(crate) fn bytes(&mut self, count: usize) -> Result<&'a [u8], ReadError> {
        if count > self.rest.len() {
            return Err(ReadError::UnexpectedEnd);
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Ok(taken)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn varint<T: DeserializeOwned>(&mut self) -> Result<T, ReadError> {
        match postcard::take_from_bytes::<T>(self.rest) {
            Ok((value, rest)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(postcard::Error::DeserializeUnexpectedEnd) => Err(ReadError::UnexpectedEnd),
            Err(_) => Err(ReadError::BadVarint),
        }
    }

    pub(crate) fn f64(&mut self) -> Result<f64, ReadError> {
        Ok(f64::from_le_bytes(self.array::<8>()?))
    }
}
