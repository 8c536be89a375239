//! A pickle interpreter for the subset of protocol 2 that PyTorch's legacy `torch.save` writes.
//!
//! Why not a crate: `serde-pickle` refuses persistent ids (`BINPERSID`) and cannot keep the
//! arguments of an arbitrary `REDUCE` such as `torch._utils._rebuild_tensor_v2`, which is how a
//! checkpoint names its tensors. This interpreter builds a plain value tree instead and never runs
//! anything: globals and calls are kept as data for the caller to recognise. Every length is
//! checked against the input, so a corrupt file is an error, never a panic.

use std::rc::Rc;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as its little-endian two's-complement bytes.
    WideInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    PersistentId(Rc<Value>),
    /// `callable(*args)` as the pickle asked for it, not evaluated.
    Call {
        callable: Rc<Value>,
        args: Vec<Value>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("pickle ends before its STOP opcode (at byte {0})")]
    Truncated(usize),
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnsupportedOpcode { opcode: u8, offset: usize },
    #[error("malformed pickle at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
}

/// Interprets one pickle starting at `input[0]`; returns its value and the bytes it used.
pub fn load(input: &[u8]) -> Result<(Value, usize), PickleError> {
    Machine::new(input).run()
}

struct Machine<'a> {
    input: &'a [u8],
    position: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            position: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: std::collections::HashMap::new(),
        }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|end| *end <= self.input.len())
            .ok_or(PickleError::Truncated(self.position))?;
        let bytes = &self.input[self.position..end];
        self.position = end;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn take_line(&mut self) -> Result<String, PickleError> {
        let rest = self.input.get(self.position..).unwrap_or_default();
        let length = rest
            .iter()
            .position(|byte| *byte == b'\n')
            .ok_or(PickleError::Truncated(self.position))?;
        let line = self.take(length)?;
        self.take(1)?;
        String::from_utf8(line.to_vec()).map_err(|_| self.malformed("GLOBAL name is not UTF-8"))
    }

    fn malformed(&self, what: &'static str) -> PickleError {
        PickleError::Malformed {
            offset: self.position,
            what,
        }
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.stack.pop().ok_or(self.malformed("stack underflow"))
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or(self.malformed("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(self.malformed("MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let offset = self.position;
        self.stack.last_mut().ok_or(PickleError::Malformed {
            offset,
            what: "stack underflow",
        })
    }

    fn string(&mut self, length: usize) -> Result<Value, PickleError> {
        let bytes = self.take(length)?;
        let text = std::str::from_utf8(bytes).map_err(|_| self.malformed("string is not UTF-8"))?;
        Ok(Value::Str(text.to_string()))
    }

    fn memo_get(&self, key: u32) -> Result<Value, PickleError> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or(self.malformed("memo key read before it was written"))
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let value = self
            .stack
            .last()
            .cloned()
            .ok_or(self.malformed("stack underflow"))?;
        self.memo.insert(key, value);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.malformed("SETITEMS with an odd number of values"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            pairs.push((key, value));
        }
        match self.top()? {
            Value::Dict(entries) => {
                entries.extend(pairs);
                Ok(())
            }
            _ => Err(self.malformed("SETITEM on something that is not a dict")),
        }
    }

    fn run(mut self) -> Result<(Value, usize), PickleError> {
        loop {
            let offset = self.position;
            let [opcode] = self.take_array::<1>()?;
            match opcode {
                0x80 => {
                    self.take(1)?; // PROTO: the version changes nothing this subset reads.
                }
                0x95 => {
                    self.take(8)?; // FRAME: a read-ahead hint.
                }
                b'.' => {
                    let value = self.pop()?;
                    return Ok((value, self.position));
                }
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let [byte] = self.take_array::<1>()?;
                    self.stack.push(Value::Int(i64::from(byte)));
                }
                b'M' => {
                    let value = u16::from_le_bytes(self.take_array()?);
                    self.stack.push(Value::Int(i64::from(value)));
                }
                b'J' => {
                    let value = i32::from_le_bytes(self.take_array()?);
                    self.stack.push(Value::Int(i64::from(value)));
                }
                0x8a => {
                    let [length] = self.take_array::<1>()?;
                    let bytes = self.take(usize::from(length))?;
                    self.stack.push(match long_from_le(bytes) {
                        Some(value) => Value::Int(value),
                        None => Value::WideInt(bytes.to_vec()),
                    });
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.take_array()?);
                    self.stack.push(Value::Float(value));
                }
                b'X' => {
                    let length = u32::from_le_bytes(self.take_array()?) as usize;
                    let value = self.string(length)?;
                    self.stack.push(value);
                }
                0x8c => {
                    let [length] = self.take_array::<1>()?;
                    let value = self.string(usize::from(length))?;
                    self.stack.push(value);
                }
                b'B' => {
                    let length = u32::from_le_bytes(self.take_array()?) as usize;
                    let bytes = self.take(length)?.to_vec();
                    self.stack.push(Value::Bytes(bytes));
                }
                b'C' => {
                    let [length] = self.take_array::<1>()?;
                    let bytes = self.take(usize::from(length))?.to_vec();
                    self.stack.push(Value::Bytes(bytes));
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_to_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let count = usize::from(opcode - 0x84);
                    if self.stack.len() < count {
                        return Err(self.malformed("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - count);
                    self.stack.push(Value::Tuple(items));
                }
                b']' => self.stack.push(Value::List(Vec::new())),
                b'a' => {
                    let item = self.pop()?;
                    match self.top()? {
                        Value::List(items) => items.push(item),
                        _ => return Err(self.malformed("APPEND to something that is not a list")),
                    }
                }
                b'e' => {
                    let new_items = self.pop_to_mark()?;
                    match self.top()? {
                        Value::List(items) => items.extend(new_items),
                        _ => return Err(self.malformed("APPENDS to something that is not a list")),
                    }
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_to_mark()?;
                    self.set_items(items)?;
                }
                b'c' => {
                    let module = self.take_line()?;
                    let name = self.take_line()?;
                    self.stack.push(Value::Global { module, name });
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.stack.push(Value::PersistentId(Rc::new(id)));
                }
                b'R' => {
                    let args = match self.pop()? {
                        Value::Tuple(args) => args,
                        _ => return Err(self.malformed("REDUCE arguments are not a tuple")),
                    };
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args));
                }
                b'b' => {
                    // BUILD sets attributes (an OrderedDict's `_metadata`, say): nothing this
                    // reader needs, and the object itself stays as it was.
                    self.pop()?;
                    self.top()?;
                }
                b'q' => {
                    let [key] = self.take_array::<1>()?;
                    self.memo_put(u32::from(key))?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.take_array()?);
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = u32::try_from(self.memo.len())
                        .map_err(|_| self.malformed("memo overflow"))?;
                    self.memo_put(key)?;
                }
                b'h' => {
                    let [key] = self.take_array::<1>()?;
                    let value = self.memo_get(u32::from(key))?;
                    self.stack.push(value);
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.take_array()?);
                    let value = self.memo_get(key)?;
                    self.stack.push(value);
                }
                _ => return Err(PickleError::UnsupportedOpcode { opcode, offset }),
            }
        }
    }
}

/// An `OrderedDict()` call becomes a dict so that the SETITEMS that follow can fill it.
fn reduce(callable: Value, args: Vec<Value>) -> Value {
    match &callable {
        Value::Global { module, name }
            if module == "collections" && name == "OrderedDict" && args.is_empty() =>
        {
            Value::Dict(Vec::new())
        }
        _ => Value::Call {
            callable: Rc::new(callable),
            args,
        },
    }
}

/// A little-endian two's-complement integer of up to 8 bytes.
fn long_from_le(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    if bytes.is_empty() {
        return Some(0);
    }
    let negative = bytes.last().is_some_and(|byte| byte & 0x80 != 0);
    let mut buffer = if negative { [0xffu8; 8] } else { [0u8; 8] };
    buffer[..bytes.len()].copy_from_slice(bytes);
    Some(i64::from_le_bytes(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_python_pickles_for_a_small_state_dict() {
        // pickle.dumps(collections.OrderedDict([("w", (1, -2, 3.5, "cpu"))]), protocol=2)
        let bytes: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00X\x03\x00\x00\x00cpuq\x03tq\x04s.";
        let (value, used) = load(bytes).expect("valid pickle");
        assert_eq!(used, bytes.len());
        assert_eq!(
            value,
            Value::Dict(vec![(
                Value::Str("w".into()),
                Value::Tuple(vec![
                    Value::Int(1),
                    Value::Int(-2),
                    Value::Float(3.5),
                    Value::Str("cpu".into())
                ])
            )])
        );
    }

    #[test]
    fn long1_is_twos_complement() {
        assert_eq!(long_from_le(&[0xff]), Some(-1));
        assert_eq!(long_from_le(&[0x00, 0x01]), Some(256));
        assert_eq!(long_from_le(&[]), Some(0));
        assert_eq!(long_from_le(&[1; 9]), None);
    }

    #[test]
    fn every_truncation_of_a_pickle_is_an_error_not_a_panic() {
        let bytes: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00X\x03\x00\x00\x00cpuq\x03tq\x04s.";
        for end in 0..bytes.len() {
            assert!(
                load(&bytes[..end]).is_err(),
                "prefix of {end} bytes accepted"
            );
        }
        for flip in 0..bytes.len() {
            let mut corrupt = bytes.to_vec();
            corrupt[flip] ^= 0x5a;
            let _ = load(&corrupt);
        }
    }
}
