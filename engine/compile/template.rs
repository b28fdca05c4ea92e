//! Templates: minijinja with strict undefined. Text templates (arguments, notes) render
//! as-is; shell templates (`run:`) quote every interpolated value unless marked `| raw`.

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};

use crate::shell::quote;

/// A template that failed: the message and the line inside the template, if known.
#[derive(Debug, Clone)]
pub struct TemplateError {
    pub message: String,
    pub line: Option<usize>,
}

pub struct Templates {
    text: Environment<'static>,
    shell: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut text = base_env();
        text.add_filter("raw", |v: Value| v);
        let mut shell = base_env();
        shell.add_filter("raw", |v: Value| Value::from_safe_string(v.to_string()));
        // Every `{{ value }}` in a shell template becomes exactly one shell word.
        shell.set_formatter(|out, _state, value| {
            let text = value.to_string();
            if value.is_safe() {
                out.write_str(&text)
            } else {
                out.write_str(&quote(&text))
            }
            .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed"))
        });
        Templates { text, shell }
    }

    pub fn render_text(&self, source: &str, ctx: &Value) -> Result<String, TemplateError> {
        self.text.render_str(source, ctx).map_err(convert)
    }

    pub fn render_shell(&self, source: &str, ctx: &Value) -> Result<String, TemplateError> {
        self.shell.render_str(source, ctx).map_err(convert)
    }

    /// Evaluates a `when:` condition; strict: an undefined name is an error, not false.
    pub fn eval_bool(&self, expr: &str, ctx: &Value) -> Result<bool, TemplateError> {
        let compiled = self.text.compile_expression(expr).map_err(convert)?;
        let v = compiled.eval(ctx).map_err(convert)?;
        Ok(v.is_true())
    }
}

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("basename", |s: String| {
        s.rsplit('/').next().unwrap_or_default().to_string()
    });
    env.add_filter("dirname", |s: String| match s.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => s[..i].to_string(),
        None => ".".to_string(),
    });
    env
}

fn convert(e: minijinja::Error) -> TemplateError {
    let message = match (e.kind(), e.detail()) {
        (minijinja::ErrorKind::UndefinedError, Some(d)) => format!("undefined value: {d}"),
        (minijinja::ErrorKind::UndefinedError, None) => {
            "undefined value (templates are strict: every name must exist)".to_string()
        }
        (kind, Some(d)) => format!("{kind}: {d}"),
        (kind, None) => kind.to_string(),
    };
    TemplateError {
        message,
        line: e.line(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn undefined_is_an_error_not_empty() {
        let t = Templates::new();
        let err = t
            .render_text(
                "{{ params.snapshto }}",
                &context! { params => context!{ snapshot => "x" } },
            )
            .unwrap_err();
        assert!(err.message.contains("undefined"), "{}", err.message);
    }

    #[test]
    fn shell_values_are_one_word_unless_raw() {
        let t = Templates::new();
        let ctx = context! { v => "$(reboot); `id` 'x'\nrm -rf /", w => "*" };
        let out = t
            .render_shell("echo {{ v }} {{ w }} {{ w | raw }}", &ctx)
            .unwrap();
        assert_eq!(
            out,
            format!("echo {} '*' *", quote("$(reboot); `id` 'x'\nrm -rf /"))
        );
        // The quoted word survives a real shell as the literal value.
        let printed = std::process::Command::new("sh")
            .arg("-c")
            .arg(t.render_shell("printf %s {{ v }}", &ctx).unwrap())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&printed.stdout),
            "$(reboot); `id` 'x'\nrm -rf /"
        );
    }

    #[test]
    fn when_conditions() {
        let t = Templates::new();
        let ctx = context! { node => context!{ name => "cp1" } };
        assert!(t.eval_bool("node.name == 'cp1'", &ctx).unwrap());
        assert!(!t.eval_bool("node.name != 'cp1'", &ctx).unwrap());
        assert!(t.eval_bool("node.nme == 'x'", &ctx).is_err());
    }
}
