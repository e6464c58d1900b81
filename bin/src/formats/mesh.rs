//! `mesh`: a triangle mesh as a vertex buffer and an index buffer.
//!
//! Layout: `MESH`, vertex count (u32), index count (u32), vertices (3 × f32 each), indices
//! (u32 each). The decoder checks that the counts account for exactly the bytes given before
//! it allocates anything (so a lying count cannot make it allocate more than the input), that
//! the indices come in threes (one triangle at least), that every coordinate is finite and
//! that every index names a vertex.

use streamrt::messages::AssetKey;
use streamrt::{DecodeError, Decoder};

use super::reader::Reader;

/// A triangle mesh.
#[derive(Debug)]
pub struct Mesh {
    /// Vertex positions.
    pub vertices: Vec<[f32; 3]>,
    /// Triangle indices into `vertices`.
    pub indices: Vec<u32>,
}

/// Decodes `mesh` assets.
pub struct MeshDecoder;

/// Encodes a mesh.
pub fn encode_mesh(mesh: &Mesh) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + mesh.vertices.len() * 12 + mesh.indices.len() * 4);
    out.extend_from_slice(b"MESH");
    out.extend_from_slice(&(mesh.vertices.len() as u32).to_le_bytes());
    out.extend_from_slice(&(mesh.indices.len() as u32).to_le_bytes());
    for v in &mesh.vertices {
        for c in v {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    for i in &mesh.indices {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out
}

impl Decoder for MeshDecoder {
    type Asset = Mesh;

    fn type_name(&self) -> &str {
        "mesh"
    }

    fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<Mesh, DecodeError> {
        let mut r = Reader::after_magic(&bytes, b"MESH")?;
        let (nv, ni) = (r.u32()? as usize, r.u32()? as usize);
        let want =
            nv.checked_mul(12).and_then(|v| ni.checked_mul(4).and_then(|i| v.checked_add(i)));
        if want != Some(r.remaining()) {
            return Err(DecodeError::Malformed(format!(
                "{nv} vertices and {ni} indices do not fit {} bytes",
                bytes.len()
            )));
        }
        if ni % 3 != 0 {
            return Err(DecodeError::Validation(format!("{ni} indices: triangles take three")));
        }
        if ni == 0 {
            return Err(DecodeError::Validation("a mesh with no triangles".into()));
        }
        // Sized exactly (the counts fit the input, checked above): grown by doubling, a
        // buffer holds up to twice what `size_bytes` reports to the memory budget.
        let mut vertices = Vec::with_capacity(nv);
        for v in 0..nv {
            let vertex = r.f32s::<3>()?;
            if !vertex.iter().all(|c| c.is_finite()) {
                return Err(DecodeError::Validation(format!("vertex {v}: {vertex:?}")));
            }
            vertices.push(vertex);
        }
        let mut indices = Vec::with_capacity(ni);
        for _ in 0..ni {
            indices.push(r.u32()?);
        }
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= nv) {
            return Err(DecodeError::Validation(format!("index {bad} out of {nv} vertices")));
        }
        Ok(Mesh { vertices, indices })
    }

    fn size_bytes(&self, mesh: &Mesh) -> u64 {
        (mesh.vertices.len() * 12 + mesh.indices.len() * 4) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reader::assert_every_truncation_refused;

    fn key() -> AssetKey {
        AssetKey::parse("mesh:x").unwrap()
    }

    fn triangle() -> Mesh {
        Mesh { vertices: vec![[0.0; 3], [1.0; 3], [2.0; 3]], indices: vec![0, 1, 2] }
    }

    #[test]
    fn meshes_round_trip_and_out_of_range_indices_are_rejected() {
        let mesh = triangle();
        let decoded = MeshDecoder.decode(&key(), encode_mesh(&mesh)).unwrap();
        assert_eq!(decoded.indices, mesh.indices);
        assert_eq!(decoded.vertices, mesh.vertices);
        let bad = Mesh { indices: vec![0, 1, 3], ..mesh };
        assert!(matches!(
            MeshDecoder.decode(&key(), encode_mesh(&bad)),
            Err(DecodeError::Validation(_))
        ));
    }

    #[test]
    fn partial_triangles_no_triangles_and_non_finite_vertices_are_rejected() {
        let partial = Mesh { indices: vec![0, 1, 2, 0], ..triangle() };
        let result = MeshDecoder.decode(&key(), encode_mesh(&partial));
        assert!(matches!(result, Err(DecodeError::Validation(_))), "{result:?}");
        for empty in
            [Mesh { indices: vec![], ..triangle() }, Mesh { vertices: vec![], indices: vec![] }]
        {
            let result = MeshDecoder.decode(&key(), encode_mesh(&empty));
            assert!(matches!(result, Err(DecodeError::Validation(_))), "{result:?}");
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut mesh = triangle();
            mesh.vertices[2][1] = bad;
            let result = MeshDecoder.decode(&key(), encode_mesh(&mesh));
            assert!(matches!(result, Err(DecodeError::Validation(_))), "{bad}: {result:?}");
        }
    }

    #[test]
    fn a_decoded_mesh_holds_exactly_what_its_size_reports() {
        let mesh = Mesh { vertices: vec![[0.5; 3]; 1_025], indices: vec![0, 1, 1_024] };
        let decoded = MeshDecoder.decode(&key(), encode_mesh(&mesh)).unwrap();
        assert_eq!(decoded.vertices.capacity(), 1_025);
        assert_eq!(decoded.indices.capacity(), 3);
        assert_eq!(MeshDecoder.size_bytes(&decoded), 1_025 * 12 + 3 * 4);
    }

    #[test]
    fn counts_that_do_not_fit_the_bytes_are_rejected() {
        let mut lying = encode_mesh(&triangle());
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(MeshDecoder.decode(&key(), lying), Err(DecodeError::Malformed(_))));
        let mut long = encode_mesh(&triangle());
        long.push(0);
        assert!(matches!(MeshDecoder.decode(&key(), long), Err(DecodeError::Malformed(_))));
        let wrong_magic = b"MESX".iter().copied().chain(encode_mesh(&triangle())[4..].to_vec());
        let result = MeshDecoder.decode(&key(), wrong_magic.collect());
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn every_truncated_mesh_is_refused() {
        assert_every_truncation_refused(&encode_mesh(&triangle()), |b| {
            MeshDecoder.decode(&key(), b)
        });
    }
}
