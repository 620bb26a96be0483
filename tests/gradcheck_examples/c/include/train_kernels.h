/* Training kernels in the style of a from-scratch C trainer (llm.c-like): B*T rows of V
   logits, float, the probabilities kept for the backward pass. */
#ifndef TRAIN_KERNELS_H
#define TRAIN_KERNELS_H

#include <math.h>

#ifndef MAXVAL_START
#define MAXVAL_START -10000.0f /* the bug: a row whose logits all lie below it gets 0/0 */
#endif

static void softmax_forward(float *probs, const float *logits, int BT, int V) {
    for (int bt = 0; bt < BT; bt++) {
        const float *row = logits + bt * V;
        float *p = probs + bt * V;
        float maxval = MAXVAL_START;
        for (int i = 0; i < V; i++) {
            if (row[i] > maxval) maxval = row[i];
        }
        float sum = 0.0f;
        for (int i = 0; i < V; i++) {
            p[i] = expf(row[i] - maxval);
            sum += p[i];
        }
        for (int i = 0; i < V; i++) p[i] /= sum;
    }
}

/* dlogits += (p - onehot(target)) * dloss, row by row */
static void crossentropy_softmax_backward(float *dlogits, const float *dlosses,
                                          const float *probs, const int *targets, int BT,
                                          int V) {
    for (int bt = 0; bt < BT; bt++) {
        for (int i = 0; i < V; i++) {
            float indicator = i == targets[bt] ? 1.0f : 0.0f;
            dlogits[bt * V + i] += (probs[bt * V + i] - indicator) * dlosses[bt];
        }
    }
}

#endif
