// 1D NMS for temporal action detection on the CPU (mse_rt.kernels._nms_cpu).
//
// Same contract as the plain PyTorch reference in mse_rt/postprocess.py and the reference
// MSE-TAD per-video NMS (docs/spec/nms.md): hard NMS, Gaussian soft-NMS that replays the
// reference's in-place array order (so ties resolve identically), class-agnostic score voting,
// per-class dispatch and the final score sort + max_seg_num cut. float32 in, float32 out;
// no torch C++ ABI, only numpy arrays through nanobind. Classes are independent: with
// threads > 1 they run on a small pool (largest first), the Python lock released meanwhile;
// the output is the same bit for bit whatever the thread count.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace nb = nanobind;

namespace {

using SegsIn = nb::ndarray<const float, nb::shape<-1, 2>, nb::c_contig, nb::device::cpu>;
using FloatIn = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using LabelIn = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

constexpr float kLenEps = 1e-6f;  // segment length epsilon of the reference IoU

struct Seg {
  float x1, x2;
};

inline float iou_eps(const Seg& a, const Seg& b) {
  const float inter = std::max(0.0f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
  const float la = a.x2 - a.x1 + kLenEps;
  const float lb = b.x2 - b.x1 + kLenEps;
  return inter / (la + lb - inter);
}

// Indices of `scores` sorted by descending score, stable on ties.
std::vector<int64_t> order_desc(const std::vector<float>& scores) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return order;
}

// Hard NMS: kept indices (into segs), in descending score order.
std::vector<int64_t> hard_nms(const std::vector<Seg>& segs, const std::vector<float>& scores,
                              float iou_threshold) {
  const auto order = order_desc(scores);
  const size_t n = order.size();
  std::vector<char> alive(n, 1);
  std::vector<int64_t> keep;
  for (size_t i = 0; i < n; ++i) {
    if (!alive[i]) continue;
    keep.push_back(order[i]);
    const Seg& a = segs[order[i]];
    for (size_t j = i + 1; j < n; ++j) {
      if (alive[j] && iou_eps(a, segs[order[j]]) >= iou_threshold) alive[j] = 0;
    }
  }
  return keep;
}

struct SoftOut {
  std::vector<Seg> segs;
  std::vector<float> scores;
  std::vector<int64_t> idx;
};

// Gaussian soft-NMS over an array that is permuted in place exactly like the reference loop.
SoftOut soft_nms(const std::vector<Seg>& segs_in, const std::vector<float>& scores_in, float sigma,
                 float min_score) {
  std::vector<Seg> segs = segs_in;
  std::vector<float> scores = scores_in;
  std::vector<int64_t> idx(segs.size());
  std::iota(idx.begin(), idx.end(), 0);
  size_t n = segs.size();
  SoftOut out;
  // position of the first maximum among positions i..n-1: a full scan for i = 0, afterwards
  // tracked by the decay pass below, which visits every survivor once in final position order
  size_t max_pos = 0;
  for (size_t p = 1; p < n; ++p) {
    if (scores[max_pos] < scores[p]) max_pos = p;  // first maximum wins
  }
  for (size_t i = 0; i < n; ++i) {
    std::swap(segs[i], segs[max_pos]);
    std::swap(scores[i], scores[max_pos]);
    std::swap(idx[i], idx[max_pos]);
    out.segs.push_back(segs[i]);
    out.scores.push_back(scores[i]);
    out.idx.push_back(idx[i]);
    const Seg a = segs[i];
    const float la = a.x2 - a.x1 + kLenEps;
    size_t p = i + 1;
    size_t next = p;  // first maximum among the survivors so far
    while (p < n) {
      // iou_eps(a, segs[p]) spelled out, its division only for overlapping pairs: a disjoint
      // pair has IoU 0 and exp(-0 / sigma) is exactly 1, so skipping both for them (most pairs
      // on a long video) gives bit-identical scores (soft-NMS at THUMOS size: see the docs)
      const float inter = std::max(0.0f, std::min(a.x2, segs[p].x2) - std::max(a.x1, segs[p].x1));
      if (inter != 0.0f) {
        const float ovr = inter / (la + (segs[p].x2 - segs[p].x1 + kLenEps) - inter);
        scores[p] *= std::exp(-(ovr * ovr) / sigma);
      }
      if (scores[p] < min_score) {  // drop: the last element takes its place, examined next
        segs[p] = segs[n - 1];
        scores[p] = scores[n - 1];
        idx[p] = idx[n - 1];
        --n;
      } else {
        if (scores[next] < scores[p]) next = p;  // survivors come in increasing position
        ++p;
      }
    }
    max_pos = next;
  }
  return out;
}

struct Dets {
  std::vector<Seg> segs;
  std::vector<float> scores;
  std::vector<int64_t> labels;
};

Dets nms_group(const std::vector<Seg>& segs, const std::vector<float>& scores,
               const std::vector<int64_t>& labels, float iou_threshold, float min_score,
               int64_t max_seg_num, bool use_soft, float sigma) {
  Dets d;
  if (use_soft) {
    SoftOut s = soft_nms(segs, scores, sigma, min_score);
    size_t n = s.idx.size();
    if (max_seg_num > 0) n = std::min<size_t>(n, static_cast<size_t>(max_seg_num));
    for (size_t i = 0; i < n; ++i) {
      d.segs.push_back(s.segs[i]);
      d.scores.push_back(s.scores[i]);
      d.labels.push_back(labels[s.idx[i]]);
    }
    return d;
  }
  // hard NMS filters by score first (only when min_score > 0, as the reference)
  std::vector<Seg> fs;
  std::vector<float> fsc;
  std::vector<int64_t> flb;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (min_score > 0 && !(scores[i] > min_score)) continue;
    fs.push_back(segs[i]);
    fsc.push_back(scores[i]);
    flb.push_back(labels[i]);
  }
  auto keep = hard_nms(fs, fsc, iou_threshold);
  if (max_seg_num > 0 && keep.size() > static_cast<size_t>(max_seg_num)) keep.resize(max_seg_num);
  for (auto k : keep) {
    d.segs.push_back(fs[k]);
    d.scores.push_back(fsc[k]);
    d.labels.push_back(flb[k]);
  }
  return d;
}

// Score voting: each kept segment becomes the score-weighted mean of all segments with
// IoU >= thresh (plain lengths, no epsilon, as the reference's voting).
void score_voting(std::vector<Seg>& kept, const std::vector<Seg>& all, const std::vector<float>& scores,
                  float thresh) {
  for (auto& k : kept) {
    double wsum = 0.0, s1 = 0.0, s2 = 0.0;
    const float lk = k.x2 - k.x1;
    for (size_t j = 0; j < all.size(); ++j) {
      const float inter = std::max(0.0f, std::min(k.x2, all[j].x2) - std::max(k.x1, all[j].x1));
      const float iou = inter / (lk + (all[j].x2 - all[j].x1) - inter);
      if (iou >= thresh) {
        wsum += scores[j];
        s1 += static_cast<double>(scores[j]) * all[j].x1;
        s2 += static_cast<double>(scores[j]) * all[j].x2;
      }
    }
    k.x1 = static_cast<float>(s1 / wsum);
    k.x2 = static_cast<float>(s2 / wsum);
  }
}

template <typename T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T>&& v, std::vector<size_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owned->data(), shape.size(), shape.data(), owner);
}

std::vector<Seg> read_segs(const SegsIn& a) {
  std::vector<Seg> out(a.shape(0));
  const float* p = a.data();
  for (size_t i = 0; i < out.size(); ++i) out[i] = {p[2 * i], p[2 * i + 1]};
  return out;
}

void check_finite(const std::vector<Seg>& segs, const std::vector<float>& scores) {
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!std::isfinite(segs[i].x1) || !std::isfinite(segs[i].x2) || !std::isfinite(scores[i]))
      throw std::invalid_argument("NMS input holds NaN or Inf at index " + std::to_string(i));
  }
}

nb::ndarray<nb::numpy, int64_t> py_hard_nms(SegsIn segs, FloatIn scores, float iou_threshold) {
  if (segs.shape(0) != scores.shape(0))
    throw std::invalid_argument("segs (N, 2) and scores (N,) disagree on N");
  auto s = read_segs(segs);
  std::vector<float> sc(scores.data(), scores.data() + scores.shape(0));
  check_finite(s, sc);
  auto keep = hard_nms(s, sc, iou_threshold);
  const size_t n = keep.size();
  return to_numpy(std::move(keep), {n});
}

std::tuple<nb::ndarray<nb::numpy, float>, nb::ndarray<nb::numpy, float>, nb::ndarray<nb::numpy, int64_t>>
py_batched_nms(SegsIn segs, FloatIn scores, LabelIn labels, float iou_threshold, float min_score,
               int64_t max_seg_num, bool use_soft_nms, bool multiclass, float sigma, float voting_thresh,
               int64_t threads) {
  const size_t n = segs.shape(0);
  if (scores.shape(0) != n || labels.shape(0) != n)
    throw std::invalid_argument("segs (N, 2), scores (N,) and labels (N,) disagree on N");
  if (use_soft_nms && !(sigma > 0)) throw std::invalid_argument("soft-NMS sigma must be > 0");
  if (threads < 1) throw std::invalid_argument("threads must be >= 1");
  auto s = read_segs(segs);
  std::vector<float> sc(scores.data(), scores.data() + n);
  std::vector<int64_t> lb(labels.data(), labels.data() + n);
  check_finite(s, sc);

  Dets all;
  if (n > 0) {
    if (multiclass) {
      std::map<int64_t, std::vector<size_t>> groups;  // ascending class id, as torch.unique
      for (size_t i = 0; i < n; ++i) groups[lb[i]].push_back(i);
      std::vector<int64_t> classes;
      std::vector<const std::vector<size_t>*> members;
      for (auto& [cls, m] : groups) {
        classes.push_back(cls);
        members.push_back(&m);
      }
      const size_t g = classes.size();
      std::vector<Dets> per_class(g);
      auto run = [&](size_t k) {
        std::vector<Seg> gs;
        std::vector<float> gsc;
        std::vector<int64_t> glb;
        for (auto i : *members[k]) {
          gs.push_back(s[i]);
          gsc.push_back(sc[i]);
          glb.push_back(classes[k]);
        }
        per_class[k] = nms_group(gs, gsc, glb, iou_threshold, min_score, max_seg_num, use_soft_nms, sigma);
      };
      const size_t workers = std::min<size_t>(threads > 1 ? static_cast<size_t>(threads) : 1, g);
      {
        nb::gil_scoped_release unlocked;
        if (workers <= 1) {
          for (size_t k = 0; k < g; ++k) run(k);
        } else {
          // largest classes first (the work grows with n^2), handed out one by one
          std::vector<size_t> order(g);
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(),
                           [&](size_t a, size_t b) { return members[a]->size() > members[b]->size(); });
          std::atomic<size_t> next{0};
          auto worker = [&]() {
            for (size_t j = next++; j < g; j = next++) run(order[j]);
          };
          std::vector<std::thread> pool;
          for (size_t w = 1; w < workers; ++w) pool.emplace_back(worker);
          worker();
          for (auto& t : pool) t.join();
        }
      }
      for (auto& d : per_class) {  // concatenated in ascending class order, as without threads
        all.segs.insert(all.segs.end(), d.segs.begin(), d.segs.end());
        all.scores.insert(all.scores.end(), d.scores.begin(), d.scores.end());
        all.labels.insert(all.labels.end(), d.labels.begin(), d.labels.end());
      }
    } else {
      nb::gil_scoped_release unlocked;
      all = nms_group(s, sc, lb, iou_threshold, min_score, max_seg_num, use_soft_nms, sigma);
      if (voting_thresh > 0 && !all.segs.empty()) score_voting(all.segs, s, sc, voting_thresh);
    }
  }
  auto order = order_desc(all.scores);
  size_t m = order.size();
  if (max_seg_num >= 0) m = std::min<size_t>(m, static_cast<size_t>(max_seg_num));
  std::vector<float> out_segs(2 * m), out_scores(m);
  std::vector<int64_t> out_labels(m);
  for (size_t i = 0; i < m; ++i) {
    out_segs[2 * i] = all.segs[order[i]].x1;
    out_segs[2 * i + 1] = all.segs[order[i]].x2;
    out_scores[i] = all.scores[order[i]];
    out_labels[i] = all.labels[order[i]];
  }
  return {to_numpy(std::move(out_segs), {m, 2}), to_numpy(std::move(out_scores), {m}),
          to_numpy(std::move(out_labels), {m})};
}

}  // namespace

NB_MODULE(_nms_cpu, m) {
  m.doc() = "1D NMS for temporal action detection (hard, Gaussian soft-NMS, score voting), float32 CPU.";
  m.def("hard_nms", &py_hard_nms, nb::arg("segs"), nb::arg("scores"), nb::arg("iou_threshold"),
        "Hard NMS of one class. segs (N, 2) float32 grid steps, scores (N,) float32 -> kept indices "
        "(int64), descending score order.");
  m.def("batched_nms", &py_batched_nms, nb::arg("segs"), nb::arg("scores"), nb::arg("labels"),
        nb::arg("iou_threshold"), nb::arg("min_score"), nb::arg("max_seg_num"), nb::arg("use_soft_nms"),
        nb::arg("multiclass"), nb::arg("sigma"), nb::arg("voting_thresh"), nb::arg("threads") = 1,
        "Per-video NMS (reference semantics). Returns (segs (M, 2), scores (M,), labels (M,)). "
        "threads > 1: classes in parallel (same output).");
}
