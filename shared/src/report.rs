//! One line for an error and its causes, as the command-line programs print it.

use std::error::Error;
use std::string::{String, ToString};

/// `error: cause: deeper cause`, each cause once. Many error types here name their cause in their
/// own message and also expose it as [`Error::source`]; a cause whose text the line already holds
/// is not repeated.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Layer {
        message: &'static str,
        names_cause: bool,
        cause: Option<std::boxed::Box<Layer>>,
    }

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match (&self.cause, self.names_cause) {
                (Some(cause), true) => write!(f, "{}: {cause}", self.message),
                _ => f.write_str(self.message),
            }
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.cause
                .as_deref()
                .map(|cause| cause as &(dyn Error + 'static))
        }
    }

    #[test]
    fn names_every_cause_once() {
        let error = Layer {
            message: "cannot open model",
            names_cause: false,
            cause: Some(std::boxed::Box::new(Layer {
                message: "cannot read m.onnx",
                names_cause: true,
                cause: Some(std::boxed::Box::new(Layer {
                    message: "No such file or directory",
                    names_cause: false,
                    cause: None,
                })),
            })),
        };
        assert_eq!(
            error_chain(&error),
            "cannot open model: cannot read m.onnx: No such file or directory"
        );
    }
}
