//! Parsing `--input NAME=DIMS` (e.g. `x=1,3,640,640`; `sr=scalar` or `sr=` for a scalar input).

/// One `NAME=D1,D2,...` argument (`NAME=scalar`, `NAME=` or `NAME=[]`: a scalar).
pub fn parse_input_dims(s: &str) -> Result<(String, Vec<i64>), String> {
    let (name, dims) = s.rsplit_once('=').ok_or_else(|| format!("'{s}': expected NAME=D1,D2,... (e.g. x=1,3,224,224; sr=scalar)"))?;
    if name.is_empty() {
        return Err(format!("'{s}': the input name is empty"));
    }
    let dims = dims.trim().trim_start_matches('[').trim_end_matches(']');
    if dims.is_empty() || dims == "scalar" {
        return Ok((name.to_string(), Vec::new()));
    }
    let dims = dims
        .split(',')
        .map(|d| match d.trim().parse::<i64>() {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(format!("'{s}': dimension '{d}' is not a positive integer")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

#[cfg(test)]
mod tests {
    use super::parse_input_dims;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_input_dims("x=1,3,48,192"), Ok(("x".into(), vec![1, 3, 48, 192])));
        assert!(parse_input_dims("x").is_err());
        assert!(parse_input_dims("x=1,-3").is_err());
        assert!(parse_input_dims("=1").is_err());
        assert!(parse_input_dims("x=1,,2").is_err());
        assert_eq!(parse_input_dims("sr=scalar"), Ok(("sr".into(), vec![])));
        assert_eq!(parse_input_dims("sr="), Ok(("sr".into(), vec![])));
        assert_eq!(parse_input_dims("state=[2,1,128]"), Ok(("state".into(), vec![2, 1, 128])));
    }
}
