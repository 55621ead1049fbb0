/* libFuzzer target: PNG and JPEG images from memory (nb_image_decode,
 * libpng and libjpeg behind our error handlers and size limits). What
 * decodes must convert to model inputs of any shape with values in [0, 1]. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "nabla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nb_image *im = NULL;
    nb_status s = nb_image_decode(data, size, &im);
    if ((s == NB_OK) != (im != NULL)) abort();
    if (s) return 0;
    if (im->width < 1 || im->height < 1 || (im->channels != 1 && im->channels != 3)) abort();
    static const int shapes[3][3] = {{28, 28, 1}, {5, 3, 3}, {1, 1, 1}};
    nb_real out[28 * 28];
    for (int k = 0; k < 3; k++) {
        if (nb_image_to_tensor(im, shapes[k][0], shapes[k][1], shapes[k][2], out)) abort();
        for (int i = 0; i < shapes[k][0] * shapes[k][1] * shapes[k][2]; i++)
            if (!(out[i] >= -1e-6 && out[i] <= 1 + 1e-6)) abort();
    }
    nb_image_free(im);
    return 0;
}
