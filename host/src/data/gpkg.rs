//! Polygon features from an OGC GeoPackage (SQLite, geometries as a GeoPackage header + WKB).
//!
//! SQLite through `rusqlite` (its bundled SQLite, so no system library is needed); WKB through
//! georust's `wkb` crate. The GeoPackage binary header in front of the WKB is eight bytes plus an
//! optional envelope (GeoPackage 1.3, section 2.1.3), read here.

use std::path::Path;

use geo_traits::to_geo::ToGeoGeometry;
use geo_types::{Geometry, MultiPolygon};
use rusqlite::{Connection, OpenFlags};

use super::error::{DataError, Result};

/// One polygon feature with its class attribute.
#[derive(Clone, Debug)]
pub struct Feature {
    pub fid: i64,
    pub class: String,
    pub geometry: MultiPolygon<f64>,
}

/// A GeoPackage feature table reduced to what labelling needs.
#[derive(Clone, Debug)]
pub struct PolygonLayer {
    pub table: String,
    /// `EPSG:n` from `gpkg_spatial_ref_sys`.
    pub crs: String,
    pub features: Vec<Feature>,
}

/// Reads every polygon feature of `table` (or of the only feature table when `None`), taking the
/// class from the text column `class_column`. Rows with a NULL class or an empty geometry are
/// skipped; a geometry that is not a (multi)polygon is an error naming the feature.
pub fn read_polygons(path: &Path, table: Option<&str>, class_column: &str) -> Result<PolygonLayer> {
    if !path.is_file() {
        return Err(DataError::MissingAsset {
            path: path.to_path_buf(),
            hint: "run scripts/fetch-assets.sh".into(),
        });
    }
    let sql_err = |source| DataError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_err)?;

    let mut stmt = conn
        .prepare(
            "SELECT c.table_name, c.column_name, s.organization, s.organization_coordsys_id \
             FROM gpkg_geometry_columns c JOIN gpkg_spatial_ref_sys s ON s.srs_id = c.srs_id",
        )
        .map_err(sql_err)?;
    let tables: Vec<(String, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)?;
    let chosen = match table {
        Some(name) => tables.iter().find(|t| t.0 == name),
        None if tables.len() == 1 => tables.first(),
        None => None,
    };
    let Some((table, geom_column, org, code)) = chosen.cloned() else {
        let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
        return Err(DataError::format(
            path,
            format!("choose one feature table of {names:?}"),
        ));
    };
    let crs = format!("{}:{code}", org.to_ascii_uppercase());

    let quote = |ident: &str| format!("\"{}\"", ident.replace('"', "\"\""));
    let query = format!(
        "SELECT fid, {}, {} FROM {} ORDER BY fid",
        quote(&geom_column),
        quote(class_column),
        quote(&table)
    );
    let mut stmt = conn.prepare(&query).map_err(sql_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<Vec<u8>>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .map_err(sql_err)?;
    let mut features = Vec::new();
    for row in rows {
        let (fid, blob, class) = row.map_err(sql_err)?;
        let (Some(blob), Some(class)) = (blob, class) else {
            continue;
        };
        let bad = |reason: String| DataError::format(path, format!("feature fid={fid}: {reason}"));
        let Some(wkb) = gpkg_wkb(&blob).map_err(bad)? else {
            continue; // empty geometry
        };
        let geometry = wkb::reader::read_wkb(wkb)
            .map_err(|e| bad(format!("bad WKB: {e}")))?
            .to_geometry();
        let geometry = match geometry {
            Geometry::Polygon(p) => MultiPolygon(vec![p]),
            Geometry::MultiPolygon(m) => m,
            other => return Err(bad(format!("not a polygon: {other:?}"))),
        };
        features.push(Feature {
            fid,
            class,
            geometry,
        });
    }
    Ok(PolygonLayer {
        table,
        crs,
        features,
    })
}

/// Strips the GeoPackage binary header, returning the WKB (or `None` for an empty geometry).
pub fn gpkg_wkb(blob: &[u8]) -> std::result::Result<Option<&[u8]>, String> {
    if blob.len() < 8 || &blob[..2] != b"GP" {
        return Err("not a GeoPackage geometry blob (no 'GP' magic)".into());
    }
    let flags = blob[3];
    if flags & 0b0010_0000 != 0 {
        return Err("extended GeoPackage geometry types are not supported".into());
    }
    if flags & 0b0001_0000 != 0 {
        return Ok(None);
    }
    let envelope = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 32,
        2 | 3 => 48,
        4 => 64,
        n => return Err(format!("invalid envelope indicator {n}")),
    };
    blob.get(8 + envelope..)
        .map(Some)
        .ok_or_else(|| "geometry blob shorter than its header".into())
}
